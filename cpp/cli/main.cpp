// ema_seg: semantic segmentation of videos, cameras, network streams and images with an
// exported ema-seg model. The CLI by job: options.cpp (flags, bounds, help), run.cpp (one input:
// model, input, outputs, pipeline), run_streams.cpp (several streams; live_view.cpp: --serve),
// model_choice.cpp and video_settings.cpp (what both runs share), report.cpp (what is printed),
// signals.cpp (Ctrl-C). The exit codes (run.h) are part of the interface: scripts test them.
#include "options.h"
#include "report.h"
#include "run.h"
#include "signals.h"

#include <emaseg/emaseg.h>

#include <opencv2/core/utils/logger.hpp>

#include <cstdio>
#include <cstdlib>

namespace {

using namespace emaseg::cli;

int exit_code(emaseg::Error::Kind kind) {
  switch (kind) {
    case emaseg::Error::Kind::kModel: return kExitModel;
    case emaseg::Error::Kind::kDevice: return kExitDevice;
    case emaseg::Error::Kind::kArgument: return kExitUsage;
    case emaseg::Error::Kind::kInput: return kExitInput;
    case emaseg::Error::Kind::kOutput: return kExitOutput;
    case emaseg::Error::Kind::kRuntime: return kExitRuntime;
  }
  return kExitRuntime;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__unix__) || defined(__APPLE__)
  // FFmpeg logs every damaged packet on stderr; ema_seg reports skipped frames itself.
  // OPENCV_FFMPEG_LOGLEVEL=16 in the environment brings FFmpeg's errors back.
  setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", /*overwrite=*/0);
#endif
  // OpenCV logs on stderr while probing backends and when FFmpeg refuses an encoder; errors
  // reach the user as ema_seg's own one-line messages. OPENCV_LOG_LEVEL in the environment
  // still wins.
  if (std::getenv("OPENCV_LOG_LEVEL") == nullptr)
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  CliOptions options;
  try {
    options = parse_args(argc, argv);
  } catch (const UsageError& e) {
    print_stderr("error", e.what());
    return kExitUsage;
  }
  if (options.help || options.version) {
    std::fputs((options.help ? help_text() : version_text()).c_str(), stdout);
    return kExitOk;
  }
  install_signal_handlers();
  try {
    return options.streams() ? run_streams(options) : run(options);
  } catch (const emaseg::Error& e) {
    print_stderr("error", e.what());
    return exit_code(e.kind());
  } catch (const cv::Exception& e) {
    print_stderr("error", "OpenCV: " + e.err);
    return kExitRuntime;
  } catch (const std::exception& e) {
    print_stderr("error", e.what());
    return kExitRuntime;
  }
}
