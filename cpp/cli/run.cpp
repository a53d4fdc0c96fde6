#include "run.h"

#include "model_choice.h"
#include "report.h"
#include "signals.h"
#include "video_settings.h"

#include <emaseg/emaseg.h>
#include <emaseg/multi_pipeline.h>
#include <emaseg/outputs.h>
#include <emaseg/pipeline.h>

#include <opencv2/core/utility.hpp>
#include <opencv2/highgui.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <memory>
#include <utility>

namespace emaseg::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kWarmupRuns = 3;

std::unique_ptr<emaseg::FrameSource> open_source(const CliOptions& o) {
  if (o.camera) return emaseg::open_camera(*o.camera);
  if (!o.image.empty()) return emaseg::open_image(o.image);
  if (!o.images.empty()) return emaseg::open_images(o.images);
  return emaseg::open_video(o.video, video_options(o));
}

// Where overlays go: a video for video input, a folder or one file for images.
emaseg::OutputOptions output_options(const CliOptions& o) {
  emaseg::OutputOptions out = video_output_options(o);
  out.mask_dir = o.mask_dir;
  if (!o.image_input()) {
    out.video = o.output;
    // "<stem>_overlay.mp4" in the current folder, the stem as a stream of that input is named.
    if (out.video.empty() && !o.video.empty() && !o.benchmark)
      out.video = emaseg::name_streams({o.video}).front().name + "_overlay.mp4";
  } else if (!o.image.empty() && (o.output.empty() || cv::haveImageWriter(o.output))) {
    out.overlay_file = o.output.empty() ? fs::path(o.image).stem().string() + "_overlay.png" : o.output;
  } else {
    out.overlay_dir = o.output;
  }
  return out;
}

}  // namespace

int run(const CliOptions& o) {
  if (o.threads > 0) cv::setNumThreads(o.threads);  // OpenCV's pool competes for the same cores

  const emaseg::Options options = model_options(o);
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
