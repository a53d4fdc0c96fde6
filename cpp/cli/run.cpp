#include "run.h"

#include "report.h"
#include "signals.h"

#include <emaseg/emaseg.h>
#include <emaseg/outputs.h>
#include <emaseg/pipeline.h>

#include <opencv2/core/utility.hpp>
#include <opencv2/highgui.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cctype>
#include <filesystem>
#include <memory>
#include <set>
#include <utility>

namespace emaseg::cli {
namespace {

namespace fs = std::filesystem;

// The default model, fastest first: the AOTInductor package where it runs on this machine,
// else the TorchScript file (which runs anywhere).
constexpr const char* kDefaultModels[] = {"models/emanet_demo.pt2", "models/emanet_demo.pt"};
constexpr double kDefaultFps = 30.0;  // for cameras and streams that do not report one
constexpr int kWarmupRuns = 3;
// The video path's threads, explicit so that they do not compete with the model's: one decoding
// thread and one sink thread (overlay, libx264), both in the background beside the model
// (PipelineOptions::background_*), so that they fill the time its threads leave the cores idle.
constexpr int kDecoderThreads = 1;
constexpr int kEncoderThreads = 1;

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
                      std::string("no --model given and no ") + kDefaultModels[1] + " or " + kDefaultModels[0] +
                          " in the current folder or beside ema_seg; pass --model FILE.pt or export one "
                          "with python python/export.py");
}

struct ChosenModel {
  std::unique_ptr<emaseg::Segmenter> segmenter;
  std::string path;
};

// --model, or the first default that loads here (a .pt2 compiled on another CPU or for another
// torch is passed over, with a note) and takes the input's frame size (a .pt2 compiled for
// fixed sizes only gives way to the .pt, which takes any).
ChosenModel choose_model(const CliOptions& o, const emaseg::Options& options, const emaseg::FrameSource* source) {
  if (!o.model.empty()) return {std::make_unique<emaseg::Segmenter>(o.model, options), o.model};
  const std::vector<std::string> candidates = default_models();
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const bool last = i + 1 == candidates.size();
    std::unique_ptr<emaseg::Segmenter> segmenter;
    try {
      segmenter = std::make_unique<emaseg::Segmenter>(candidates[i], options);
    } catch (const emaseg::Error& e) {
      if (e.kind() != emaseg::Error::Kind::kModel || last) throw;
      if (!o.quiet) print_stderr("note", std::string(e.what()) + "; using " + candidates[i + 1]);
      continue;
    }
    const emaseg::Metadata& meta = segmenter->metadata();
    const bool fits = meta.any_size || (source != nullptr && o.images.empty() && meta.takes(source->frame_size()));
    if (fits || last) return {std::move(segmenter), candidates[i]};
    if (!o.quiet)
      print_stderr("note", candidates[i] + " holds no model for these frames' network size and no any-size "
                                           "model; using " + candidates[i + 1]);
  }
  throw emaseg::Error(emaseg::Error::Kind::kModel, "no default model loads");  // not reached
}

std::unique_ptr<emaseg::FrameSource> open_source(const CliOptions& o) {
  if (o.camera) return emaseg::open_camera(*o.camera);
  if (!o.image.empty()) return emaseg::open_image(o.image);
  if (!o.images.empty()) return emaseg::open_images(o.images);
  emaseg::VideoOptions video;
  video.stall_timeout = o.stall_timeout;
  video.hwaccel = o.hwaccel;
  video.device = o.device;
  video.threads = kDecoderThreads;
  video.stop = &stop_requested();  // Ctrl-C ends a blocking open or read at once
  return emaseg::open_video(o.video, video);
}

// Where overlays go: a video for video input, a folder or one file for images.
emaseg::OutputOptions output_options(const CliOptions& o) {
  emaseg::OutputOptions out;
  out.alpha = o.alpha;
  out.fourcc = o.codec == "mp4v" ? "mp4v" : "avc1";  // avc1: H.264 in an mp4
  out.preset = o.preset;
  out.crf = o.crf;
  out.encoder_threads = kEncoderThreads;
  out.fallback_fourcc = o.codec.empty() ? "mp4v" : "";
  out.default_fps = kDefaultFps;
  out.mask_dir = o.mask_dir;
  if (!o.image_input()) {
    out.video = o.output;
    if (out.video.empty() && !o.video.empty() && !o.benchmark) out.video = default_video_output(o.video);
  } else if (!o.image.empty() && (o.output.empty() || cv::haveImageWriter(o.output))) {
    out.overlay_file = o.output.empty() ? fs::path(o.image).stem().string() + "_overlay.png" : o.output;
  } else {
    out.overlay_dir = o.output;
  }
  return out;
}

// The export command that compiles `model`'s network for `net` (HxW) into the package itself.
std::string compile_command(const std::string& model, cv::Size net) {
  fs::path checkpoint = fs::path(model).replace_extension(".pth");  // the demo's: models/emanet_demo.pth
  std::error_code ec;
  const std::string source = fs::exists(checkpoint, ec) ? checkpoint.string() : "CHECKPOINT.pth";
  return "python python/export.py --checkpoint " + source + " --add-to " + model + " --output " + model +
         " --network-sizes " + std::to_string(net.height) + "x" + std::to_string(net.width);
}

// Says once per network size, on stderr, that frames run on the slower any-size model and how to
// compile theirs: never silently slow.
class UncompiledSizeNote {
 public:
  UncompiledSizeNote(const emaseg::Metadata& meta, std::string model, bool quiet)
      : meta_(meta), model_(std::move(model)), quiet_(quiet) {}
  void check(cv::Size frame) {
    if (quiet_ || meta_.compiled_for(frame)) return;
    const cv::Size net = meta_.network_size(frame);
    if (!said_.insert({net.width, net.height}).second) return;
    print_stderr("note", std::to_string(frame.width) + "x" + std::to_string(frame.height) +
                             " frames run the network at " + std::to_string(net.height) + "x" +
                             std::to_string(net.width) + ", which " + model_ +
                             " has no compiled model for: they run on its slower any-size model. Compile it "
                             "once with: " + compile_command(model_, net));
  }

 private:
  const emaseg::Metadata& meta_;
  std::string model_;
  bool quiet_;
  std::set<std::pair<int, int>> said_;
};

}  // namespace

int run(const CliOptions& o) {
  if (o.threads > 0) cv::setNumThreads(o.threads);  // OpenCV's pool competes for the same cores

  emaseg::Options options;
  options.device = o.device;
  options.half = o.fp16;
  options.optimize = o.optimize;
  options.threads = o.threads;
  options.max_pixels = static_cast<long long>(o.max_megapixels * 1e6);
  // A bad --model is reported before the input is opened; the default waits for the input's size.
  ChosenModel model;
  if (!o.model.empty()) model = choose_model(o, options, nullptr);
  // Open the input before creating any output, so a bad input leaves nothing behind.
  std::unique_ptr<emaseg::FrameSource> source;
  try {
    source = open_source(o);
  } catch (const emaseg::Error&) {
    if (!stop_requested().load()) throw;
    print_stderr("note", "interrupted while opening " + o.input_name());
    return kExitInterrupted;
  }
  if (o.model.empty()) model = choose_model(o, options, source.get());
  const emaseg::Segmenter& segmenter = *model.segmenter;

  RunReport report;
  report.input = o.input_name();
  report.model = model.path;
  report.device = segmenter.device();
  report.decoder = source->decoder();

  const emaseg::OutputOptions out = output_options(o);
  emaseg::RunOutputs outputs(segmenter, *source, out);  // refuses to overwrite any input
  register_temp_files(outputs.temp_files());
  report.output = !out.video.empty() ? out.video : !out.overlay_file.empty() ? out.overlay_file : out.overlay_dir;
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
  if (o.benchmark) segmenter.warmup(source->frame_size(), kWarmupRuns);

  long long total = source->frame_count();
  if (o.max_frames > 0 && (total < 0 || o.max_frames < total)) total = o.max_frames;
  Progress progress(!o.quiet && !o.json, total);

  emaseg::PipelineOptions pipeline;
  pipeline.every = o.every;
  pipeline.max_frames = o.max_frames;
  pipeline.stop = &stop_requested();
  // The overlay video is made on the decoder's own planes unless a window shows the BGR overlay.
  pipeline.i420_planes = !out.video.empty() && !window;
  pipeline.background_sink = !source->live();  // a camera's frames are encoded at its pace
  // --benchmark's model-only figure is the model alone: decoding waits while it runs.
  pipeline.decode_between_frames = o.benchmark;
  const bool image_input = o.image_input();
  // Each bad image of a batch is named, even with --quiet: the exit code alone cannot say which.
  pipeline.on_unreadable = [&o, image_input](long long index, const std::string& name) {
    if (image_input) print_stderr("error", "cannot read image '" + name + "'; skipped");
    else if (!o.quiet) print_stderr("warning", "skipped unreadable frame " + std::to_string(index));
  };
  pipeline.on_frame_error = [](long long, const std::string& name, const std::string& message) {
    print_stderr("error", "'" + name + "': " + message + "; skipped");
  };

  long long delivered = 0;
  UncompiledSizeNote uncompiled(segmenter.metadata(), model.path, o.quiet);
  const auto sink = [&](const emaseg::FrameResult& r) {
    uncompiled.check(r.frame.size());
    cv::Mat shown;
    if (window) shown = segmenter.overlay(r.frame, r.labels, o.alpha);  // else RunOutputs makes what it needs
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
    if (out.video.empty()) throw;
    // A stream that stalled or failed mid-run: what came before is the user's, kept as a partial
    // video. Any other failure leaves no video: `outputs` deletes it on the way out.
    std::string kept;
    if (e.kind() == emaseg::Error::Kind::kInput) {
      try {
        kept = outputs.finish_partial();
      } catch (const emaseg::Error&) {
      }
    }
    register_temp_files({});
    throw emaseg::Error(e.kind(), std::string(e.what()) +
                                      (kept.empty() ? "; no video was written" : "; the frames before are in " + kept));
  }
  progress.finish();
  report.interrupted = stop_requested().load();
  if (report.interrupted) {
    report.output = outputs.finish_partial();
    report.partial = !report.output.empty();
  } else {
    outputs.finish();  // complete and checked before the summary says it is there
  }
  register_temp_files({});
  if (window) cv::destroyAllWindows();
  report.overlay_ms = outputs.overlay_ms();
  report.encode_ms = outputs.encode_ms();

  report.bad_images = image_input ? report.stats.unreadable + report.stats.failed : 0;
  if (o.benchmark && !o.json) print_benchmark(report, source->frame_size(), kWarmupRuns, o.threads);
  if (o.json) print_json(report, segmenter.metadata(), o.threads, o.benchmark);
  if (!o.quiet && !o.json) print_summary(report);
  if (report.interrupted) return kExitInterrupted;
  return report.bad_images ? kExitSomeFailed : kExitOk;
}

}  // namespace emaseg::cli
