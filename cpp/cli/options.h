// ema_seg's command line: what the user asked for, parsed and checked (options.cpp).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace emaseg::cli {

struct CliOptions {
  std::string model;  // empty: the first default model that loads (run.cpp)
  std::string video;                // the one --video of a single-stream run
  std::vector<std::string> videos;  // every --video, in order
  std::string sources;              // --sources FILE
  std::string output_dir;           // several streams: DIR/<name>_overlay.mp4
  std::string serve;                // live view: HOST:PORT, :PORT or PORT ("": none)
  std::optional<double> serve_fps;
  int model_workers = 0;  // several streams: models run at once (0: automatic, run_streams.cpp)  // --serve's frame rate per viewer; default kServeFps (live_view.h)
  std::optional<int> camera;
  std::string image;
  std::string images;
  std::string output;
  std::string mask_dir;
  double alpha = 0.5;
  std::string codec;  // "h264" or "mp4v"; empty: H.264, else mp4v with a note
  std::string preset = "ultrafast";  // libx264's
  int crf = 23;
  double stall_timeout = 10.0;  // seconds; 0: wait forever
  std::string hwaccel = "none";
  bool show = false;
  std::string device = "cpu";
  bool fp16 = false;
  bool optimize = false;
  int threads = 0;  // 0: LibTorch's default
  double max_megapixels = 40.0;
  long long max_frames = -1;  // -1: every frame
  int every = 1;
  bool benchmark = false;
  bool json = false;
  bool quiet = false;
  bool help = false;
  bool version = false;

  bool image_input() const { return !image.empty() || !images.empty(); }
  // Several streams in one process (run_streams.cpp): more than one --video, a sources file, an
  // output folder or a live view.
  bool streams() const { return videos.size() > 1 || !sources.empty() || !output_dir.empty() || !serve.empty(); }
  // The input as the user named it: "camera N", the video path or URL, the image(s).
  std::string input_name() const;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The options, or UsageError with one line in ema_seg's words. `help` or `version` set: nothing
// is checked.
CliOptions parse_args(int argc, const char* const* argv);

// The full --help text, generated from the option definitions.
std::string help_text();

// --version: "ema_seg 0.1.0 (LibTorch 2.13.0, OpenCV 4.6.0)", what this binary was built with.
std::string version_text();

}  // namespace emaseg::cli
