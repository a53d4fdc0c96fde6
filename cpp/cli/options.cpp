// ema_seg's options with CLI11: every flag, its help, its bound and its message are defined once,
// in define_options; the checks that span several options follow in check_combination.
#include "options.h"

#include <emaseg/emaseg.h>

#include <CLI/CLI.hpp>
#include <opencv2/core/version.hpp>

#include <charconv>
#include <cstdlib>
#include <functional>
#include <string_view>
#include <vector>

namespace emaseg::cli {
namespace {

constexpr double kMaxMegapixels = 1e6;  // "no limit" is 0; beyond this a value is a typo

template <typename T>
std::optional<T> parse_number(const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// A number that must satisfy `ok`; CLI11 runs validators on the text, before converting it.
// The message reads after the option's name: "--alpha must lie in [0, 1]".
template <typename T>
CLI::Validator number(std::function<bool(T)> ok, std::string message) {
  return CLI::Validator(
      [ok = std::move(ok), message = std::move(message)](std::string& text) -> std::string {
        const std::optional<T> value = parse_number<T>(text);
        if (!value) return "expects a number, got '" + text + "'";
        return ok(*value) ? std::string() : message + ", got " + text;
      },
      "");
}

// One of `choices`; the message reads "--codec must be h264 or mp4v, got 'vp9'".
CLI::Validator one_of(std::vector<std::string> choices) {
  std::string list;
  for (std::size_t i = 0; i < choices.size(); ++i)
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  return CLI::Validator(
      [choices = std::move(choices), list](std::string& text) -> std::string {
        for (const auto& choice : choices)
          if (text == choice) return "";
        return "must be " + list + ", got '" + text + "'";
      },
      "");
}

// Paths, URLs, names: an empty string is never what the user meant (it would silently select
// the default, or nothing).
CLI::Validator non_empty(const std::string& what) {
  return CLI::Validator(
      [what](std::string& text) -> std::string {
        return text.empty() ? "expects " + what + ", got an empty string" : std::string();
      },
      "");
}

void define_options(CLI::App& app, CliOptions& o) {
  app.description("Semantic segmentation with an exported ema-seg model (python python/export.py).");
  app.get_formatter()->column_width(22);
  app.allow_extras();  // reported in ema_seg's words by parse_args
  app.set_help_flag();  // ours, below: a flag like the others, listed last

  const std::string input = "input (one kind)";
  app.add_option("--video", o.videos,
                 "video file or network stream (rtsp://, http://, ...) via FFmpeg; give it\n"
                 "several times for several streams in one process")
      ->type_name("PATH|URL")->group(input)->check(non_empty("a file or URL"))->allow_extra_args(false);
  app.add_option("--sources", o.sources,
                 "several streams, one per line: NAME=PATH_OR_URL, a bare path or URL\n"
                 "(named after its stem) or NAME=camera:N; '#' starts a comment;\n"
                 "relative paths are relative to FILE")
      ->type_name("FILE")->group(input)->check(non_empty("a sources file"));
  app.add_option("--camera", o.camera, "camera index N")
      ->type_name("N")->group(input)->check(number<int>([](int v) { return v >= 0; }, "expects an index >= 0"));
  app.add_option("--image", o.image, "one image file")
      ->type_name("FILE")->group(input)->check(non_empty("an image file"));
  app.add_option("--images", o.images,
                 "every image file OpenCV reads in DIR (sorted by name; hidden files\n"
                 "are skipped), or a pattern like 'dir/*.png'")
      ->type_name("DIR|GLOB")->group(input)->check(non_empty("a folder or a pattern"));

  const int most_threads = emaseg::max_threads();
  app.add_option("--model", o.model,
                 "exported model, .pt (TorchScript) or .pt2 (AOTInductor, faster;\n"
                 "compiled for this CPU and torch). Default: models/emanet_demo.pt2\n"
                 "if it runs here and takes the input's frame size, else\n"
                 "models/emanet_demo.pt, in the current folder, else in\n"
                 "<folder of ema_seg>/../models")
      ->type_name("FILE")->group("model")->check(non_empty("a model file"));
  app.add_option("--device", o.device, "cpu (default), cuda or cuda:N")
      ->type_name("DEV")->group("model")->check(non_empty("cpu, cuda or cuda:N"));
  app.add_flag("--fp16", o.fp16, "half precision (CUDA only)")->group("model")->disable_flag_override();
  app.add_option("--threads", o.threads,
                 "LibTorch and OpenCV threads, 1 to 4 x the hardware threads\n"
                 "(default: LibTorch's, one per core)")
      ->type_name("N")->group("model")
      ->check(number<int>([most_threads](int v) { return v >= 1 && v <= most_threads; },
                          "must lie in 1.." + std::to_string(most_threads) + " (4 x the hardware threads)"));
  app.add_option("--max-pixels", o.max_megapixels,
                 "refuse frames larger than MPX megapixels (default 40, 8K UHD fits;\n"
                 "0: no limit); in --images runs such images are skipped and named")
      ->type_name("MPX")->group("model")
      ->check(number<double>([](double v) { return v >= 0.0 && v < kMaxMegapixels; },
                             "expects megapixels >= 0 (0: no limit)"));
  app.add_option("--model-workers", o.model_workers,
                 "several streams: load the model N times and run frames of different\n"
                 "streams at once, each with --threads / N threads (default: on the CPU\n"
                 "one per stream, at most 2 per thread; on CUDA 1, batching instead)")
      ->type_name("N")->group("model")
      ->check(number<int>([](int v) { return v >= 1 && v <= 64; }, "must lie in 1..64"));
  app.add_flag("--optimize", o.optimize,
               "CPU: freeze the model and repack its convolutions for oneDNN at\n"
               "load (about 1.25x faster, more memory); ignored on CUDA")
      ->group("model")->disable_flag_override();

  app.add_option("--output", o.output,
                 "video/camera: overlay video (see --codec; input fps and size). Default for\n"
                 "--video: <input stem>_overlay.mp4 in the current folder; cameras\n"
                 "write no video unless given.\n"
                 "images: a folder for <stem>_overlay.png files; --image also takes a\n"
                 "file name with an image extension. Default for --image:\n"
                 "<stem>_overlay.png in the current folder; --images writes no\n"
                 "overlays unless given.")
      ->type_name("PATH")->group("output")->check(non_empty("a file or folder name"));
  app.add_option("--mask-dir", o.mask_dir,
                 "label PNGs (pixel value = class id; 16-bit beyond 256 classes):\n"
                 "frame_%06d.png (input frame index) for video, <stem>.png for images;\n"
                 "written for frames the model ran on (see --every). Images whose\n"
                 "names share a stem (a.png, a.jpg) get a_png.png and a_jpg.png.")
      ->type_name("DIR")->group("output")->check(non_empty("a folder name"));
  app.add_option("--codec", o.codec,
                 "overlay video codec: h264 (default; browsers play it) or mp4v (MPEG-4\n"
                 "Part 2). Without --codec, an FFmpeg without libx264 writes\n"
                 "mp4v, with a note; --codec h264 then fails")
      ->type_name("C")->group("output")
      ->check(one_of({"h264", "mp4v"}));
  app.add_option("--preset", o.preset,
                 "H.264 encoder speed against file size: ultrafast (default), superfast,\n"
                 "veryfast, faster, fast, medium, slow, slower, veryslow")
      ->type_name("P")->group("output")
      ->check(one_of({"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}));
  app.add_option("--crf", o.crf, "H.264 quality, 0..51: lower is better and bigger (default 23)")
      ->type_name("N")->group("output")
      ->check(number<int>([](int v) { return v >= 0 && v <= 51; }, "must lie in 0..51"));
  app.add_option("--output-dir", o.output_dir,
                 "several streams: DIR/<name>_overlay.mp4 for each (default: the current\n"
                 "folder); with --mask-dir, masks go to MASKDIR/<name>/")
      ->type_name("DIR")->group("output")->check(non_empty("a folder name"));
  app.add_option("--serve", o.serve,
                 "live view over HTTP at HOST:PORT (HOST default 127.0.0.1; port 0: any\n"
                 "free one): / shows every stream, /streams/<name>.mjpg its overlay as\n"
                 "MJPEG, /streams/<name>.jpg the newest one, /stats.json the stats")
      ->type_name("[HOST:]PORT")->group("output")->check(non_empty("HOST:PORT"));
  app.add_option("--serve-fps", o.serve_fps, "most overlay frames per second --serve sends a viewer (default 5)")
      ->type_name("N")->group("output")
      ->check(number<double>([](double v) { return v > 0.0 && v <= 60.0; }, "must lie in (0, 60]"));
  app.add_option("--alpha", o.alpha, "overlay opacity in [0, 1] (default 0.5)")
      ->type_name("A")->group("output")
      ->check(number<double>([](double v) { return v >= 0.0 && v <= 1.0; }, "must lie in [0, 1]"));
  app.add_flag("--show", o.show, "show the overlay in a window (q or Esc stops)")
      ->group("output")->disable_flag_override();

  app.add_option("--stall-timeout", o.stall_timeout,
                 "seconds a video or stream may send nothing (opening or reading)\n"
                 "before the run ends with an input error (default 10; 0: wait forever)")
      ->type_name("S")->group("run")
      ->check(number<double>([](double v) { return v >= 0.0 && v <= 1e6; }, "must lie in 0..1000000 seconds"));
  app.add_option("--hwaccel", o.hwaccel,
                 "video decoding: none (default), auto (NVDEC with --device cuda,\n"
                 "else software), cuda (NVDEC) or vaapi")
      ->type_name("HW")->group("run")
      ->check(one_of({"none", "auto", "cuda", "vaapi"}));
  app.add_option("--max-frames", o.max_frames, "read at most N input frames")
      ->type_name("N")->group("run")->check(number<long long>([](long long v) { return v >= 1; }, "must be >= 1"));
  app.add_option("--every", o.every,
                 "run the model on every Nth frame; frames in between reuse its labels\n"
                 "(video and camera only; default 1)")
      ->type_name("N")->group("run")->check(number<int>([](int v) { return v >= 1; }, "must be >= 1"));
  app.add_flag("--benchmark", o.benchmark,
               "warm up, then print model-only and end-to-end latency (p50, p95),\n"
               "fps and each stage's p50; writes no default output video")
      ->group("run")->disable_flag_override();
  app.add_flag("--json", o.json,
               "print a JSON summary on stdout (frames, dropped, unreadable, fps,\n"
               "latencies, each stage's (decode, model, overlay, encode), per-class\n"
               "pixel share, peak RSS)")
      ->group("run")->disable_flag_override();
  app.add_flag("--quiet", o.quiet, "no progress or warnings on stderr (errors are still printed)")
      ->group("run")->disable_flag_override();
  app.add_flag("-h,--help", o.help, "this help")->group("run")->disable_flag_override();
  app.add_flag("--version", o.version, "the version, and the LibTorch and OpenCV it was built with")
      ->group("run")->disable_flag_override();

  app.footer(
      "Outputs never overwrite an input (any spelling: path, file:// URL, link): such a run is\n"
      "refused before it starts. Every file appears under its name only when complete and\n"
      "checked (a video when it plays back with every frame); a failed or killed run leaves\n"
      "none. An interrupted video is kept as <stem>.partial.mp4.\n"
      "\n"
      "Cameras and live streams keep only the newest frame when the model is slower than the\n"
      "source; the frames skipped that way are counted as \"dropped\". Frames that fail to decode\n"
      "are skipped and counted as \"unreadable\"; in --images runs an unreadable or refused image is\n"
      "named on stderr, the others are processed, and the exit code is 7. Ctrl-C (SIGINT) or\n"
      "SIGTERM stops reading, finishes the frames in flight and keeps the playable video as\n"
      "<stem>.partial.mp4; a second one quits at once and removes it. Ctrl-C also ends a blocking\n"
      "open or read of a stream at once. A stream that sends nothing for --stall-timeout seconds\n"
      "ends the run with an input error; the frames before it are kept as <stem>.partial.mp4.\n"
      "FFmpeg's messages and OpenCV's warnings are silenced; EMASEG_FFMPEG_LOGLEVEL=16 and\n"
      "OPENCV_LOG_LEVEL=INFO bring them back.\n"
      "\n"
      "Several streams (--video given more than once, --sources, --output-dir or --serve) share one\n"
      "model. A stream that cannot be opened or fails is named on stderr and the others go on (exit\n"
      "8). Network streams and cameras that end or stall are reopened, waiting 1 s, then 2, 4, ...\n"
      "up to 30 s; files end normally.\n"
      "\n"
      "exit codes: 0 ok, 1 runtime error, 2 usage error, 3 model error, 4 input error,\n"
      "            5 output error, 6 device error, 7 some images failed, 8 some streams failed,\n"
      "            130 interrupted");
}

// CLI11's messages, in the words the README and scripts know ("--video needs a value").
std::string in_our_words(const CLI::ParseError& error) {
  const std::string message = error.what();
  std::string name = message.substr(0, message.find_first_of(": "));
  if (name.rfind('-', 0) != 0) name = "--" + name;  // the flag-override message drops the dashes
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&error) != nullptr) {
    if (message.find("flag override") != std::string::npos) return name + " takes no value";
    if (message.find("At Most") != std::string::npos) return name + " is given more than once";
    return name + " needs a value";
  }
  if (dynamic_cast<const CLI::ValidationError*>(&error) != nullptr && message.rfind(name + ": ", 0) == 0)
    return name + " " + message.substr(name.size() + 2);
  return message;
}

void check_combination(const CliOptions& o) {
  const bool videos = !o.videos.empty() || !o.sources.empty();
  const int inputs = videos + o.camera.has_value() + !o.image.empty() + !o.images.empty();
  if (inputs != 1)
    throw UsageError(inputs == 0 ? "no input: give --video, --sources, --camera, --image or --images"
                                 : "give exactly one of --video (or --sources), --camera, --image, --images");
  if (o.every > 1 && o.image_input()) throw UsageError("--every applies to --video and --camera only");
  if (o.hwaccel != "none" && !videos) throw UsageError("--hwaccel applies to --video and --sources only");
  if (o.streams()) {
    if (!videos)
      throw UsageError("--output-dir and --serve apply to --video and --sources (a camera in a sources file: "
                       "NAME=camera:N)");
    if (!o.output.empty())
      throw UsageError("--output names one video; for several streams use --output-dir DIR "
                       "(DIR/<name>_overlay.mp4)");
    if (o.show) throw UsageError("--show shows one stream; for several use --serve");
    if (o.benchmark) throw UsageError("--benchmark measures one input; give one --video");
  } else if (o.model_workers > 0) {
    throw UsageError("--model-workers applies to several streams (--video given more than once, --sources)");
  }
  if (o.serve.empty() && o.serve_fps) throw UsageError("--serve-fps applies to --serve only");
#if defined(__linux__)
  // GTK aborts the whole process when it finds no display; refuse early instead.
  if (o.show && std::getenv("DISPLAY") == nullptr && std::getenv("WAYLAND_DISPLAY") == nullptr)
    throw UsageError("--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set");
#endif
}

}  // namespace

std::string CliOptions::input_name() const {
  if (camera) return "camera " + std::to_string(*camera);
  if (!video.empty()) return video;
  return !image.empty() ? image : images;
}

CliOptions parse_args(int argc, const char* const* argv) {
  CliOptions o;
  CLI::App app("", "ema_seg");
  define_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    throw UsageError(in_our_words(e));
  }
  if (o.help || o.version) return o;
  const std::vector<std::string> extras = app.remaining();
  if (!extras.empty()) {
    const std::string& first = extras.front();
    if (first.rfind('-', 0) == 0)
      throw UsageError("unknown option '" + first.substr(0, first.find('=')) + "' (see --help)");
    throw UsageError("unexpected argument '" + first + "'; inputs need --video, --image, ...");
  }
  check_combination(o);
  if (o.videos.size() == 1 && !o.streams()) o.video = o.videos.front();
  return o;
}

std::string version_text() {
  return std::string("ema_seg ") + EMASEG_VERSION + " (LibTorch " + EMASEG_TORCH_VERSION + ", OpenCV " +
         CV_VERSION + ")\n";
}

std::string help_text() {
  CliOptions unused;
  CLI::App app("", "ema_seg");
  define_options(app, unused);
  return app.help();
}

}  // namespace emaseg::cli
