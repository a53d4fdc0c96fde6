// ema_seg: semantic segmentation of videos, cameras, network streams and images with an
// exported ema-seg model. One file: options, a flat argument parser, main. `ema_seg --help`
// lists everything; the exit codes below are part of the interface (scripts test them).
#include <emaseg/emaseg.h>
#include <emaseg/outputs.h>
#include <emaseg/pipeline.h>
#include <nlohmann/json.hpp>

#include <opencv2/core/utility.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/highgui.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace {

namespace fs = std::filesystem;

enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,  // the model failed while running, or another unexpected error
  kExitUsage = 2,    // unknown or malformed option, missing input
  kExitModel = 3,    // model file missing, corrupt, no ema-seg metadata, .pt2 for another CPU/torch
  kExitInput = 4,    // video, camera, stream or images cannot be opened
  kExitOutput = 5,   // output video, image folder or mask folder cannot be written
  kExitDevice = 6,   // requested device unavailable (e.g. --device cuda without CUDA)
  kExitSomeFailed = 7,  // --image/--images: some images failed (each named on stderr), the rest done
  kExitInterrupted = 130,  // SIGINT/SIGTERM: outputs were finished and closed first
};

// The default model, fastest first: the AOTInductor package where it runs on this machine,
// else the TorchScript file (which runs anywhere).
constexpr const char* kDefaultModels[] = {"models/emanet_demo.pt2", "models/emanet_demo.pt"};
constexpr double kDefaultFps = 30.0;  // for cameras and streams that do not report one

const char* const kHelp = R"(usage: ema_seg [--model FILE] INPUT [options]

Semantic segmentation with an exported ema-seg model (python python/export.py).

input (exactly one):
  --video PATH|URL     video file or network stream (rtsp://, http://, ...) via FFmpeg
  --camera N           camera index N
  --image FILE         one image file
  --images DIR|GLOB    every image file OpenCV reads in DIR (sorted by name; hidden files
                       are skipped), or a pattern like 'dir/*.png'

model:
  --model FILE         exported model, .pt (TorchScript) or .pt2 (AOTInductor, faster;
                       compiled for this CPU and torch). Default: models/emanet_demo.pt2
                       if it runs here and takes the input's frame size, else
                       models/emanet_demo.pt, in the current folder, else in
                       <folder of ema_seg>/../models
  --device DEV         cpu (default), cuda or cuda:N
  --fp16               half precision (CUDA only)
  --threads N          LibTorch and OpenCV threads, 1 to 4 x the hardware threads
                       (default: LibTorch's, one per core)
  --max-pixels MPX     refuse frames larger than MPX megapixels (default 40, 8K UHD fits;
                       0: no limit); in --images runs such images are skipped and named
  --optimize           CPU: freeze the model and repack its convolutions for oneDNN at
                       load (about 1.25x faster, more memory); ignored on CUDA

output:
  --output PATH        video/camera: overlay video (see --codec; input fps and size). Default for
                       --video: <input stem>_overlay.mp4 in the current folder; cameras
                       write no video unless given.
                       images: a folder for <stem>_overlay.png files; --image also takes a
                       file name with an image extension. Default for --image:
                       <stem>_overlay.png in the current folder; --images writes no
                       overlays unless given.
  --mask-dir DIR       label PNGs (pixel value = class id; 16-bit beyond 256 classes):
                       frame_%06d.png (input frame index) for video, <stem>.png for images;
                       written for frames the model ran on (see --every). Images whose
                       names share a stem (a.png, a.jpg) get a_png.png and a_jpg.png.
  Outputs never overwrite an input (any spelling: path, file:// URL, link): such a run is
  refused before it starts. Every file appears under its name only when complete and
  checked (a video when it plays back with every frame); a failed or killed run leaves
  none. An interrupted video is kept as <stem>.partial.mp4.
  --codec C            overlay video codec: h264 (default; browsers play it) or mp4v (MPEG-4
                       Part 2). Without --codec, an OpenCV that cannot encode H.264 writes
                       mp4v, with a note; --codec h264 then fails
  --alpha A            overlay opacity in [0, 1] (default 0.5)
  --show               show the overlay in a window (q or Esc stops)

run:
  --max-frames N       read at most N input frames
  --every N            run the model on every Nth frame; frames in between reuse its labels
                       (video and camera only; default 1)
  --benchmark          warm up, then print model-only and end-to-end latency (p50, p95)
                       and fps; writes no default output video
  --json               print a JSON summary on stdout (frames, dropped, unreadable, fps,
                       latencies, per-class pixel share, peak RSS)
  --quiet              no progress or warnings on stderr (errors are still printed)
  -h, --help           this help

Cameras and live streams keep only the newest frame when the model is slower than the
source; the frames skipped that way are counted as "dropped". Frames that fail to decode
are skipped and counted as "unreadable"; in --images runs an unreadable or refused image is
named on stderr, the others are processed, and the exit code is 7. Ctrl-C (SIGINT) or
SIGTERM stops reading, finishes the frames in flight and keeps the playable video as
<stem>.partial.mp4; a second one quits at once and removes it. FFmpeg's decoder messages
and OpenCV's warnings are silenced; OPENCV_FFMPEG_LOGLEVEL=16 and OPENCV_LOG_LEVEL=INFO
bring them back.

exit codes: 0 ok, 1 runtime error, 2 usage error, 3 model error, 4 input error,
            5 output error, 6 device error, 7 some images failed, 130 interrupted
)";

struct CliOptions {
  std::string model;  // empty: the first of kDefaultModels that loads
  std::string video;
  std::optional<int> camera;
  std::string image;
  std::string images;
  std::string output;
  std::string mask_dir;
  double alpha = 0.5;
  std::string codec;  // "h264" or "mp4v"; empty: H.264, else mp4v with a note
  bool show = false;
  std::string device = "cpu";
  bool fp16 = false;
  bool optimize = false;
  int threads = 0;
  double max_megapixels = 40.0;
  long long max_frames = -1;
  int every = 1;
  bool benchmark = false;
  bool json = false;
  bool quiet = false;
  bool help = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Argument parsing: `--name value` or `--name=value`; numbers must parse completely.

template <typename T>
T parse_number(const std::string& name, const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end)
    throw UsageError(name + " expects a number, got '" + text + "'");
  return value;
}

CliOptions parse_args(int argc, char** argv) {
  CliOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      inline_value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
    }
    const auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    const auto flag = [&]() {
      if (inline_value) throw UsageError(arg + " takes no value");
      return true;
    };
    if (arg == "-h" || arg == "--help") o.help = flag();
    else if (arg == "--model") o.model = value();
    else if (arg == "--video") o.video = value();
    else if (arg == "--camera") o.camera = parse_number<int>(arg, value());
    else if (arg == "--image") o.image = value();
    else if (arg == "--images") o.images = value();
    else if (arg == "--output") o.output = value();
    else if (arg == "--mask-dir") o.mask_dir = value();
    else if (arg == "--alpha") o.alpha = parse_number<double>(arg, value());
    else if (arg == "--codec") o.codec = value();
    else if (arg == "--show") o.show = flag();
    else if (arg == "--device") o.device = value();
    else if (arg == "--fp16") o.fp16 = flag();
    else if (arg == "--optimize") o.optimize = flag();
    else if (arg == "--threads") o.threads = parse_number<int>(arg, value());
    else if (arg == "--max-pixels") o.max_megapixels = parse_number<double>(arg, value());
    else if (arg == "--max-frames") o.max_frames = parse_number<long long>(arg, value());
    else if (arg == "--every") o.every = parse_number<int>(arg, value());
    else if (arg == "--benchmark") o.benchmark = flag();
    else if (arg == "--json") o.json = flag();
    else if (arg == "--quiet") o.quiet = flag();
    else if (arg.rfind("-", 0) == 0) throw UsageError("unknown option '" + arg + "' (see --help)");
    else throw UsageError("unexpected argument '" + arg + "'; inputs need --video, --image, ...");
  }
  if (o.help) return o;

  const int inputs = !o.video.empty() + o.camera.has_value() + !o.image.empty() + !o.images.empty();
  if (inputs != 1)
    throw UsageError(inputs == 0 ? "no input: give --video, --camera, --image or --images"
                                 : "give exactly one of --video, --camera, --image, --images");
  if (o.camera && *o.camera < 0) throw UsageError("--camera expects an index >= 0");
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) throw UsageError("--alpha must lie in [0, 1]");
  if (!o.codec.empty() && o.codec != "h264" && o.codec != "mp4v")
    throw UsageError("--codec must be h264 or mp4v, got '" + o.codec + "'");
  if (o.threads < 0 || o.threads > emaseg::max_threads())
    throw UsageError("--threads must lie in 1.." + std::to_string(emaseg::max_threads()) +
                     " (4 x the hardware threads), got " + std::to_string(o.threads));
  if (!(o.max_megapixels >= 0.0 && o.max_megapixels < 1e6))
    throw UsageError("--max-pixels expects megapixels >= 0 (0: no limit)");
  if (o.every < 1) throw UsageError("--every must be >= 1");
  if (o.max_frames == 0 || o.max_frames < -1) throw UsageError("--max-frames must be >= 1");
  if (o.every > 1 && (!o.image.empty() || !o.images.empty()))
    throw UsageError("--every applies to --video and --camera only");
#if defined(__linux__)
  // GTK aborts the whole process when it finds no display; refuse early instead.
  if (o.show && std::getenv("DISPLAY") == nullptr && std::getenv("WAYLAND_DISPLAY") == nullptr)
    throw UsageError("--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set");
#endif
  return o;
}

// ---------------------------------------------------------------------------------------------
// Signals: the first only sets a flag (async-signal-safe); the pipeline polls it. A second one
// quits at once, for a run that is stuck (e.g. on a network read): it removes the temporary
// video first (unlink is async-signal-safe), then dies of the signal as usual.

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
constexpr int kMaxTempFiles = 4;
char g_temp_files[kMaxTempFiles][4096];  // written before the handlers can see them
std::atomic<int> g_temp_count{0};

extern "C" void on_signal(int signum) {
  if (!g_stop.exchange(true)) return;
#if defined(__unix__) || defined(__APPLE__)
  for (int i = 0; i < g_temp_count.load(); ++i) unlink(g_temp_files[i]);
#endif
  std::signal(signum, SIG_DFL);
  std::raise(signum);
}

void install_signal_handlers() {
#if defined(__unix__) || defined(__APPLE__)
  struct sigaction action = {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
#else
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
#endif
}

// Tells the second-signal path which temporary files to remove.
void register_temp_files(const std::vector<std::string>& files) {
  int count = 0;
  for (const auto& file : files) {
    if (count == kMaxTempFiles || file.size() >= sizeof g_temp_files[0]) break;
    std::snprintf(g_temp_files[count++], sizeof g_temp_files[0], "%s", file.c_str());
  }
  g_temp_count.store(count);
}

// ---------------------------------------------------------------------------------------------
// stderr: progress updates in place on a terminal; errors start on a fresh line.

std::mutex g_stderr_mutex;
bool g_progress_open = false;  // a '\r' progress line is on screen

bool stderr_is_terminal() {
#if defined(__unix__) || defined(__APPLE__)
  return isatty(STDERR_FILENO) != 0;
#else
  return false;
#endif
}

void print_stderr(const std::string& kind, std::string message) {
  for (char& c : message)
    if (c == '\n' || c == '\r') c = ' ';  // one line per message, whatever the source said
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  if (g_progress_open) std::fputc('\n', stderr);
  g_progress_open = false;
  std::fprintf(stderr, "ema_seg: %s: %s\n", kind.c_str(), emaseg::printable(message).c_str());
  std::fflush(stderr);
}

class Progress {
 public:
  Progress(bool enabled, long long total) : enabled_(enabled), total_(total) {}

  void update(long long frames) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    const double interval = terminal_ ? 0.25 : 2.0;  // a log file wants few lines
    if (std::chrono::duration<double>(now - last_).count() < interval) return;
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double fps = seconds > 0 ? double(frames) / seconds : 0.0;
    char line[160];
    if (total_ > 0) {
      const double eta = fps > 0 ? double(total_ - frames) / fps : 0.0;
      std::snprintf(line, sizeof line, "frames %lld/%lld (%.0f%%)  %.1f fps  ETA %.0fs", frames,
                    total_, 100.0 * double(frames) / double(total_), fps, eta > 0 ? eta : 0.0);
    } else {
      std::snprintf(line, sizeof line, "frames %lld  %.1f fps", frames, fps);
    }
    std::lock_guard<std::mutex> lock(g_stderr_mutex);
    if (terminal_) {
      std::fprintf(stderr, "\r%-60s", line);
      g_progress_open = true;
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

  void finish() {
    std::lock_guard<std::mutex> lock(g_stderr_mutex);
    if (g_progress_open) std::fputc('\n', stderr);
    g_progress_open = false;
  }

 private:
  bool enabled_;
  long long total_;
  bool terminal_ = stderr_is_terminal();
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

// ---------------------------------------------------------------------------------------------
// Outputs

// "<stem>_overlay.mp4" in the current folder for a file or URL.
std::string default_video_output(const std::string& input) {
  std::string last = input.substr(input.find_last_of('/') + 1);
  last = last.substr(0, last.find_first_of("?#"));
  std::string stem = fs::path(last).stem().string();
  for (char& c : stem)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  return (stem.empty() ? std::string("stream") : stem) + "_overlay.mp4";
}

// The default models that exist, in the current folder, else beside the binary (../models).
std::vector<std::string> default_models() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& root : {fs::path("."), ec ? fs::path() : exe.parent_path() / ".."}) {
    if (root.empty()) continue;
    std::vector<std::string> found;
    for (const char* name : kDefaultModels) {
      const fs::path path = root == "." ? fs::path(name) : (root / name).lexically_normal();
      if (fs::exists(path, ec)) found.push_back(path.string());
    }
    if (!found.empty()) return found;
  }
  throw emaseg::Error(emaseg::Error::Kind::kModel,
                      std::string("no --model given and no ") + kDefaultModels[1] + " or " +
                          kDefaultModels[0] + " in the current folder or beside ema_seg; pass "
                          "--model FILE.pt or export one with python python/export.py");
}

// --model, or the fastest default that loads here (a .pt2 compiled on another CPU or for
// another torch is passed over, with a note, for the .pt).
std::unique_ptr<emaseg::Segmenter> load_model(const CliOptions& o, const emaseg::Options& options,
                                              std::string& path) {
  if (!o.model.empty()) {
    path = o.model;
    return std::make_unique<emaseg::Segmenter>(path, options);
  }
  const std::vector<std::string> candidates = default_models();
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    try {
      path = candidates[i];
      return std::make_unique<emaseg::Segmenter>(path, options);
    } catch (const emaseg::Error& e) {
      if (e.kind() != emaseg::Error::Kind::kModel || i + 1 == candidates.size()) throw;
      if (!o.quiet) print_stderr("note", std::string(e.what()) + "; using " + candidates[i + 1]);
    }
  }
  return nullptr;  // not reached: the last candidate returns or throws
}

long peak_rss_kb() {  // VmHWM: the most resident memory this process has used
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Summaries

nlohmann::ordered_json json_latency(const emaseg::LatencySummary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50}, {"p95", s.p95}, {"max", s.max}};
}

struct RunReport {
  std::string input;
  std::string model;
  std::string device;
  std::string output;    // empty: none
  std::string mask_dir;  // empty: none
  std::string codec;     // the video's: "h264", "mp4v"; empty: none
  bool interrupted = false;
  bool partial = false;  // `output` is the interrupted run's <stem>.partial video
  emaseg::PipelineStats stats;
};

void print_json(const RunReport& r, const emaseg::Metadata& meta, int threads, bool benchmark) {
  const auto& s = r.stats;
  std::uint64_t pixels = 0;
  for (const auto count : s.class_pixels) pixels += count;
  const auto text_or_null = [](const std::string& text) {
    return text.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(text);
  };
  nlohmann::ordered_json shares = nlohmann::ordered_json::array();
  for (std::size_t c = 0; c < s.class_pixels.size(); ++c)
    shares.push_back({{"id", c},
                      {"name", c < meta.class_names.size() ? meta.class_names[c] : ""},
                      {"share", pixels ? double(s.class_pixels[c]) / double(pixels) : 0.0}});
  const long rss = peak_rss_kb();
  const nlohmann::ordered_json report = {
      {"input", r.input},
      {"model", r.model},
      {"config_name", meta.config_name},
      {"device", r.device},
      {"threads", threads},
      {"output", text_or_null(r.output)},
      {"mask_dir", text_or_null(r.mask_dir)},
      {"codec", text_or_null(r.codec)},
      {"frames", s.delivered},
      {"inferred", s.inferred},
      {"reused", s.reused},
      {"dropped", s.dropped},
      {"unreadable", s.unreadable},
      {"failed", s.failed},
      {"seconds", s.seconds},
      {"fps", s.seconds > 0 ? double(s.delivered) / s.seconds : 0.0},
      {"interrupted", r.interrupted},
      {"partial", r.partial},
      {"benchmark", benchmark},
      {"model_ms", json_latency(s.model_ms)},
      {"end_to_end_ms", json_latency(s.latency_ms)},
      {"class_share", shares},
      {"peak_rss_mb", rss >= 0 ? nlohmann::ordered_json(double(rss) / 1024.0) : nlohmann::ordered_json()},
  };
  // Invalid UTF-8 in a path (a file name is bytes) is replaced rather than failing the run.
  // ensure_ascii: every control character of a file name or URL arrives as a \u escape.
  const std::string text = report.dump(2, ' ', true, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

void print_benchmark(const RunReport& r, cv::Size size, int warmup_runs, int threads) {
  const auto& s = r.stats;
  std::printf("benchmark: %lld frames of %dx%d on %s, %s thread(s), after %d warm-up runs\n",
              s.delivered, size.width, size.height, r.device.c_str(),
              threads > 0 ? std::to_string(threads).c_str() : "default", warmup_runs);
  std::printf("  model only  p50 %8.2f ms  p95 %8.2f ms  (%.1f fps at p50)\n", s.model_ms.p50,
              s.model_ms.p95, s.model_ms.p50 > 0 ? 1000.0 / s.model_ms.p50 : 0.0);
  std::printf("  end-to-end  p50 %8.2f ms  p95 %8.2f ms  throughput %.1f fps\n", s.latency_ms.p50,
              s.latency_ms.p95, s.seconds > 0 ? double(s.delivered) / s.seconds : 0.0);
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------

int run(const CliOptions& o) {
  if (o.threads > 0) cv::setNumThreads(o.threads);  // OpenCV's pool competes for the same cores

  emaseg::Options options;
  options.device = o.device;
  options.half = o.fp16;
  options.optimize = o.optimize;
  options.threads = o.threads;
  options.max_pixels = static_cast<long long>(o.max_megapixels * 1e6);
  std::string model_path;
  std::unique_ptr<emaseg::Segmenter> model = load_model(o, options, model_path);

  // Open the input before creating any output, so a bad input leaves nothing behind.
  const bool image_input = !o.image.empty() || !o.images.empty();
  const std::string input = o.camera ? "camera " + std::to_string(*o.camera)
                            : !o.video.empty() ? o.video
                            : !o.image.empty() ? o.image
                                               : o.images;
  const std::unique_ptr<emaseg::FrameSource> source =
      o.camera         ? emaseg::open_camera(*o.camera)
      : !o.image.empty() ? emaseg::open_image(o.image)
      : image_input      ? emaseg::open_images(o.images)
                         : emaseg::open_video(o.video);
  // A default .pt2 compiled for one frame size (setup.sh compiles it for the sample video's)
  // is the fastest model only for that size; other inputs get the .pt, which takes any size.
  const cv::Size fixed = model->metadata().fixed_frame_size;
  if (o.model.empty() && !fixed.empty() && (!o.images.empty() || !model->metadata().takes(source->frame_size()))) {
    const std::vector<std::string> candidates = default_models();
    if (candidates.size() > 1 && candidates.back() != model_path) {
      if (!o.quiet)
        print_stderr("note", model_path + " is compiled for " + std::to_string(fixed.width) + "x" +
                                 std::to_string(fixed.height) + " frames only; using " +
                                 candidates.back());
      model_path = candidates.back();
      model = std::make_unique<emaseg::Segmenter>(model_path, options);
    }
  }
  const emaseg::Segmenter& segmenter = *model;

  RunReport report;
  report.input = input;
  report.model = model_path;
  report.device = segmenter.device();

  // Where overlays go: a video for video input, a folder or one file for images.
  emaseg::OutputOptions out;
  out.alpha = o.alpha;
  out.fourcc = o.codec == "mp4v" ? "mp4v" : "avc1";  // avc1: H.264 in an mp4
  out.fallback_fourcc = o.codec.empty() ? "mp4v" : "";
  out.default_fps = kDefaultFps;
  out.mask_dir = o.mask_dir;
  if (!image_input) {
    out.video = o.output;
    if (out.video.empty() && !o.video.empty() && !o.benchmark) out.video = default_video_output(o.video);
  } else if (!o.image.empty() && (o.output.empty() || cv::haveImageWriter(o.output))) {
    out.overlay_file = o.output.empty() ? fs::path(o.image).stem().string() + "_overlay.png" : o.output;
  } else {
    out.overlay_dir = o.output;
  }
  emaseg::RunOutputs outputs(segmenter, *source, out);  // refuses to overwrite any input
  register_temp_files(outputs.temp_files());
  report.output = !out.video.empty() ? out.video : !out.overlay_file.empty() ? out.overlay_file
                                                                               : out.overlay_dir;
  report.mask_dir = out.mask_dir;
  report.codec = outputs.fourcc() == "avc1" ? "h264" : outputs.fourcc();
  if (!o.quiet)
    for (const auto& note : outputs.notes()) print_stderr("note", note);

  bool window = false;
  if (o.show) {
    try {
      cv::namedWindow("ema_seg", cv::WINDOW_NORMAL);
      window = true;
    } catch (const cv::Exception& e) {
      throw emaseg::Error(emaseg::Error::Kind::kOutput, "--show cannot open a window: " + e.err);
    }
  }

  const int warmup_runs = 3;
  if (o.benchmark) segmenter.warmup(source->frame_size(), warmup_runs);

  long long total = source->frame_count();
  if (o.max_frames > 0 && (total < 0 || o.max_frames < total)) total = o.max_frames;
  Progress progress(!o.quiet && !o.json, total);

  emaseg::PipelineOptions pipeline;
  pipeline.every = o.every;
  pipeline.max_frames = o.max_frames;
  pipeline.stop = &g_stop;
  // Each bad image of a batch is named, even with --quiet: the exit code alone cannot say which.
  pipeline.on_unreadable = [&o, image_input](long long index, const std::string& name) {
    if (image_input) print_stderr("error", "cannot read image '" + name + "'; skipped");
    else if (!o.quiet) print_stderr("warning", "skipped unreadable frame " + std::to_string(index));
  };
  pipeline.on_frame_error = [](long long, const std::string& name, const std::string& message) {
    print_stderr("error", "'" + name + "': " + message + "; skipped");
  };

  long long delivered = 0;
  const auto sink = [&](const emaseg::FrameResult& r) {
    cv::Mat shown;
    if (outputs.needs_overlay() || window) shown = segmenter.overlay(r.frame, r.labels, o.alpha);
    outputs.write(r, shown);
    if (window) {
      cv::imshow("ema_seg", shown);
      const int key = cv::waitKey(1);
      if (key == 'q' || key == 27) return false;
    }
    progress.update(++delivered);
    return true;
  };

  try {
    report.stats = emaseg::run_pipeline(segmenter, *source, sink, pipeline);
  } catch (const emaseg::Error& e) {
    progress.finish();
    // `outputs` deletes the unfinished video on the way out; say so, lest the user look for it.
    throw emaseg::Error(e.kind(), std::string(e.what()) +
                                      (out.video.empty() ? "" : "; no video was written"));
  }
  progress.finish();
  report.interrupted = g_stop.load();
  if (report.interrupted) {
    const std::string kept = outputs.finish_partial();
    report.output = kept;
    report.partial = !kept.empty();
  } else {
    outputs.finish();  // complete and checked before the summary says it is there
  }
  register_temp_files({});
  if (window) cv::destroyAllWindows();

  if (o.benchmark && !o.json) print_benchmark(report, source->frame_size(), warmup_runs, o.threads);
  if (o.json) print_json(report, segmenter.metadata(), o.threads, o.benchmark);
  const auto& s = report.stats;
  const long long bad_images = image_input ? s.unreadable + s.failed : 0;
  if (!o.quiet && !o.json) {
    std::ostringstream line;
    line << std::fixed << std::setprecision(2);
    line << (report.interrupted ? "interrupted after " : "done: ") << s.delivered << " frame(s) in "
         << s.seconds << " s (" << (s.seconds > 0 ? double(s.delivered) / s.seconds : 0.0) << " fps)";
    if (s.dropped) line << ", " << s.dropped << " dropped";
    if (bad_images) line << ", " << bad_images << " image(s) failed";
    else if (s.unreadable) line << ", " << s.unreadable << " unreadable";
    if (!report.output.empty()) line << " -> " << report.output;
    if (report.partial) line << " (partial)";
    std::lock_guard<std::mutex> lock(g_stderr_mutex);
    std::fprintf(stderr, "%s\n", emaseg::printable(line.str()).c_str());
  }
  if (report.interrupted) return kExitInterrupted;
  return bad_images ? kExitSomeFailed : kExitOk;
}

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
  if (options.help) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  install_signal_handlers();
  try {
    return run(options);
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
