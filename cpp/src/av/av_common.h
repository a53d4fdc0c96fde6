// FFmpeg (libavformat, libavcodec, libswscale, libavutil) with RAII: owners for its contexts,
// its error texts, and the interrupt callback that bounds every blocking call.
// Only the av_*.cpp translation units include it.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace emaseg::av {

struct FormatInputDeleter {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* c) const { sws_freeContext(c); }
};
struct BufferDeleter {
  void operator()(AVBufferRef* b) const { av_buffer_unref(&b); }
};
using InputPtr = std::unique_ptr<AVFormatContext, FormatInputDeleter>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;
using BufferPtr = std::unique_ptr<AVBufferRef, BufferDeleter>;

FramePtr make_frame();    // throws std::bad_alloc
PacketPtr make_packet();  // throws std::bad_alloc

// FFmpeg's text for an error code ("Connection refused", "End of file").
std::string error_text(int code);

// FFmpeg logs every damaged packet on stderr; ema-seg reports what matters itself.
// EMASEG_FFMPEG_LOGLEVEL (e.g. 16 for errors, 32 for info) brings its messages back.
void quiet_logs();

// Bounds a blocking FFmpeg call: libavformat polls it while it waits for the network or the
// disk. The call is abandoned when `stop` is set (Ctrl-C) or the deadline passes (a stalled
// stream), whichever first; `reason()` says which. A fired watchdog stays fired: FFmpeg's I/O
// keeps failing with AVERROR_EXIT after it, and later calls must still say why.
class Watchdog {
 public:
  enum class Reason { kNone, kStopped, kStalled };
  Watchdog(double timeout_seconds, const std::atomic<bool>* stop)
      : timeout_(timeout_seconds), stop_(stop) {}
  // Starts a new wait of `timeout` seconds (0: no deadline).
  void arm() {
    deadline_ = timeout_ > 0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(timeout_))
                             : Clock::time_point::max();
  }
  Reason reason() const { return reason_; }
  double timeout() const { return timeout_; }
  AVIOInterruptCB callback() { return {&Watchdog::poll, this}; }

 private:
  using Clock = std::chrono::steady_clock;
  static int poll(void* self);  // non-zero: give up

  double timeout_;
  const std::atomic<bool>* stop_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Reason reason_ = Reason::kNone;
};

}  // namespace emaseg::av
