// Several streams in one process (--video given more than once, --sources, --output-dir,
// --serve): one model, per-stream outputs and stats, a live view. One stream's trouble is its
// own: it is named on stderr and marked failed, and the others go on.
#include "live_view.h"
#include "model_choice.h"
#include "report.h"
#include "run.h"
#include "signals.h"
#include "video_settings.h"

#include <emaseg/multi_pipeline.h>
#include <emaseg/outputs.h>

#include <opencv2/core/utility.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace emaseg::cli {
namespace {

namespace fs = std::filesystem;

// The temporary files of every stream's outputs, for the second Ctrl-C (signals.h).
class TempFiles {
 public:
  void set(std::size_t stream, std::vector<std::string> files) {
    const std::lock_guard<std::mutex> lock(mutex_);
    files_[stream] = std::move(files);
    std::vector<std::string> all;
    for (const auto& [index, list] : files_) all.insert(all.end(), list.begin(), list.end());
    register_temp_files(all);
  }

 private:
  std::mutex mutex_;
  std::map<std::size_t, std::vector<std::string>> files_;
};

void make_output_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw Error(Error::Kind::kOutput, "cannot create the output folder '" + dir + "'" + (ec ? ": " + ec.message() : ""));
}

}  // namespace

int run_streams(const CliOptions& o) {
  if (o.threads > 0) cv::setNumThreads(o.threads);  // OpenCV's pool competes for the same cores
  const auto started = std::chrono::steady_clock::now();
  // The streams first: a bad sources file is reported before the model loads.
  std::vector<StreamSpec> specs;
  if (!o.sources.empty()) specs = read_sources(o.sources);
  specs = name_streams(o.videos, std::move(specs));
  const std::size_t n = specs.size();

  // Model workers: on the CPU one model using every core is slower than several using a few each
  // (4 x 720p on 2 cores: 18.0 fps with one worker, 22.7 with 2, 25.3 with 4 at one thread each;
  // README, "Several cameras"), so each stream gets its own, up to two per thread (+40 MB each).
  const int threads = o.threads > 0 ? o.threads : int(std::max(1U, std::thread::hardware_concurrency()));
  const bool cuda = o.device.rfind("cuda", 0) == 0;
  const int workers = o.model_workers > 0 ? o.model_workers
                      : cuda               ? 1
                                           : int(std::min<std::size_t>(n, std::size_t(2 * threads)));
  emaseg::Options per_worker = model_options(o);
  if (!cuda) per_worker.threads = std::max(1, threads / workers);
  const ChosenModel model = choose_model(o, per_worker, nullptr);
  const Segmenter& segmenter = *model.segmenter;
  std::vector<std::unique_ptr<Segmenter>> more_models;
  std::vector<const Segmenter*> models{&segmenter};
  for (int w = 1; w < workers; ++w) {
    more_models.push_back(std::make_unique<Segmenter>(model.path, per_worker));
    models.push_back(more_models.back().get());
  }

  MultiPipelineOptions options;
  options.video = video_options(o);
  options.max_frames = o.max_frames;
  options.every = o.every;
  options.stop = &stop_requested();
  options.i420_planes = true;  // overlay videos from the decoders' own planes
  MultiPipeline pipeline(models, specs, options);

  StreamsReport report;
  report.model = model.path;
  report.device = segmenter.device();
  report.threads = o.threads;
  report.batch = pipeline.batch();
  report.workers = pipeline.workers();
  for (const StreamSpec& spec : specs) report.streams.push_back({spec.input, "", false, {}});
  std::mutex report_mutex;                   // report.streams' outputs, finish_errors
  std::vector<std::string> finish_errors(n);  // an output that failed at the end fails its stream
  // The report as of now: the pipeline's stats with what the outputs added.
  const auto current = [&] {
    const std::vector<StreamStats> stats = pipeline.stats();
    const std::lock_guard<std::mutex> lock(report_mutex);
    StreamsReport now = report;
    now.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (std::size_t i = 0; i < n; ++i) {
      now.streams[i].stats = stats[i];
      if (!finish_errors[i].empty()) {
        now.streams[i].stats.state = StreamState::kFailed;
        now.streams[i].stats.error = finish_errors[i];
      }
    }
    return now;
  };

  // Listening before anything is written: a port in use leaves nothing behind.
  std::unique_ptr<LiveView> view;
  if (!o.serve.empty()) {
    std::vector<std::string> names;
    for (const StreamSpec& spec : specs) names.push_back(spec.name);
    view = std::make_unique<LiveView>(o.serve, o.serve_fps.value_or(kServeFps), names,
                                      [&current] { return streams_json(current(), false); });
    report.serving = view->url();
    if (!o.quiet) print_stderr("note", "live view at " + view->url());
  }
  // Without --output-dir, overlays go to the current folder, named as a single --video's.
  const fs::path out_dir = o.output_dir;
  if (!o.output_dir.empty()) make_output_dir(o.output_dir);

  std::vector<std::unique_ptr<RunOutputs>> outputs(n);  // each used by its stream's threads only
  TempFiles temp_files;
  UncompiledSizeNote uncompiled(segmenter.metadata(), model.path, o.quiet);
  std::mutex progress_mutex;
  Progress progress(!o.quiet && !o.json, -1);
  long long delivered = 0;
  const auto stream_label = [&specs](std::size_t i) { return "stream '" + specs[i].name + "'"; };

  StreamEvents events;
  events.on_open = [&](std::size_t i, const FrameSource& source) {
    OutputOptions out = video_output_options(o);
    out.video = (out_dir / (specs[i].name + "_overlay.mp4")).string();
    if (!o.mask_dir.empty()) out.mask_dir = (fs::path(o.mask_dir) / specs[i].name).string();
    auto made = std::make_unique<RunOutputs>(segmenter, source, out);  // refuses to overwrite any input
    if (!o.quiet)
      for (const auto& note : made->notes()) print_stderr("note", stream_label(i) + ": " + note);
    temp_files.set(i, made->temp_files());
    outputs[i] = std::move(made);
    const std::lock_guard<std::mutex> lock(report_mutex);
    report.streams[i].output = out.video;
  };
  events.on_frame = [&](std::size_t i, const FrameResult& r) {
    uncompiled.check(r.frame.size());
    cv::Mat shown;  // made only while someone watches, at most --serve-fps
    if (view && view->wants(i)) {
      shown = segmenter.overlay(r.frame, r.labels, o.alpha);
      view->publish(i, shown);
    }
    outputs[i]->write(r, shown);
    const std::lock_guard<std::mutex> lock(progress_mutex);
    progress.update(++delivered);
  };
  events.on_end = [&](std::size_t i, const StreamStats& stats) {
    std::string kept, error;
    bool partial = false;
    if (outputs[i]) {
      // A stream that ended by itself is complete; one that failed or was interrupted keeps what
      // it has as <name>_overlay.partial.mp4.
      const bool complete = stats.state == StreamState::kEnded && !stop_requested().load();
      try {
        if (complete) {
          outputs[i]->finish();
          const std::lock_guard<std::mutex> lock(report_mutex);
          kept = report.streams[i].output;
        } else {
          kept = outputs[i]->finish_partial();
          partial = !kept.empty();
        }
      } catch (const Error& e) {
        error = e.what();
      }
      outputs[i].reset();  // deletes whatever was not finished
      temp_files.set(i, {});
    }
    {
      const std::lock_guard<std::mutex> lock(report_mutex);
      report.streams[i].output = kept;
      report.streams[i].partial = partial;
      finish_errors[i] = error;
    }
    if (stats.state == StreamState::kFailed || !error.empty())
      print_stderr("error", stream_label(i) + " (" + specs[i].input + ") failed: " + (error.empty() ? stats.error : error) +
                                (kept.empty() ? "" : "; its frames are in " + kept));
  };
  events.on_notice = [&](std::size_t i, const std::string& message) {
    if (!o.quiet) print_stderr("warning", stream_label(i) + ": " + message);
  };

  pipeline.run(events);  // only a failure of the model itself ends it early (rethrown: exit 1)
  progress.finish();
  report = current();
  report.interrupted = stop_requested().load();
  view.reset();  // viewers' connections end with the run
  if (o.json) {
    const std::string text = streams_json(report, true);
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }
  if (!o.quiet && !o.json) print_streams_summary(report);
  if (report.interrupted) return kExitInterrupted;
  for (const StreamReport& stream : report.streams)
    if (stream.stats.state == StreamState::kFailed) return kExitStreamsFailed;
  return kExitOk;
}

}  // namespace emaseg::cli
