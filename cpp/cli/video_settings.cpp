#include "video_settings.h"

#include "signals.h"

namespace emaseg::cli {

emaseg::VideoOptions video_options(const CliOptions& o) {
  emaseg::VideoOptions video;
  video.stall_timeout = o.stall_timeout;
  video.hwaccel = o.hwaccel;
  video.device = o.device;
  video.threads = kDecoderThreads;
  video.stop = &stop_requested();
  return video;
}

emaseg::OutputOptions video_output_options(const CliOptions& o) {
  emaseg::OutputOptions out;
  out.alpha = o.alpha;
  out.fourcc = o.codec == "mp4v" ? "mp4v" : "avc1";  // avc1: H.264 in an mp4
  out.preset = o.preset;
  out.crf = o.crf;
  out.encoder_threads = kEncoderThreads;
  out.fallback_fourcc = o.codec.empty() ? "mp4v" : "";
  out.default_fps = kDefaultFps;
  return out;
}

}  // namespace emaseg::cli
