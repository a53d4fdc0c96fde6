#include "av_common.h"

#include <cstdlib>
#include <new>

namespace emaseg::av {

FramePtr make_frame() {
  FramePtr frame(av_frame_alloc());
  if (!frame) throw std::bad_alloc();
  return frame;
}

PacketPtr make_packet() {
  PacketPtr packet(av_packet_alloc());
  if (!packet) throw std::bad_alloc();
  return packet;
}

std::string error_text(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof text);
  return text;
}

void quiet_logs() {
  const char* level = std::getenv("EMASEG_FFMPEG_LOGLEVEL");
  av_log_set_level(level != nullptr ? std::atoi(level) : AV_LOG_QUIET);
}

int Watchdog::poll(void* self) {
  auto& dog = *static_cast<Watchdog*>(self);
  if (dog.reason_ != Reason::kNone) return 1;
  if (dog.stop_ != nullptr && dog.stop_->load()) {
    dog.reason_ = Reason::kStopped;
    return 1;
  }
  if (Clock::now() > dog.deadline_) {
    dog.reason_ = Reason::kStalled;
    return 1;
  }
  return 0;
}

}  // namespace emaseg::av
