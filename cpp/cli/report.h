// What ema_seg prints: one-line messages and progress on stderr, the summary line, --json and
// --benchmark on stdout. Everything that comes from the user's files is escaped (printable).
#pragma once

#include <emaseg/emaseg.h>
#include <emaseg/multi_pipeline.h>
#include <emaseg/pipeline.h>

#include <opencv2/core.hpp>

#include <chrono>
#include <string>

namespace emaseg::cli {

// "ema_seg: KIND: MESSAGE" on one line (a progress line on screen is ended first).
void print_stderr(const std::string& kind, std::string message);

// "frames 12/100 (12%)  9.5 fps  ETA 9s", in place on a terminal, every 2 s into a log.
class Progress {
 public:
  Progress(bool enabled, long long total);
  void update(long long frames);
  void finish();

 private:
  bool enabled_;
  long long total_;
  bool terminal_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

struct RunReport {
  std::string input;
  std::string model;
  std::string device;
  std::string output;    // empty: none
  std::string mask_dir;  // empty: none
  std::string codec;     // the video's: "h264", "mp4v"; empty: none
  bool interrupted = false;
  bool partial = false;  // `output` is the interrupted run's <stem>.partial video
  long long bad_images = 0;  // --image/--images: unreadable or refused
  std::string decoder;   // FFmpeg's decoder of a video or stream ("h264 (1 thread)"); empty: none
  emaseg::PipelineStats stats;
  emaseg::LatencySummary overlay_ms, encode_ms;  // per written frame (RunOutputs)
};

void print_json(const RunReport& r, const emaseg::Metadata& meta, int threads, bool benchmark);
void print_benchmark(const RunReport& r, cv::Size size, int warmup_runs, int threads);
// "done: 100 frame(s) in 4.20 s (23.81 fps) -> out.mp4" on stderr.
void print_summary(const RunReport& r);

// A run of several streams (run_streams.cpp).
struct StreamReport {
  std::string input;
  std::string output;  // the overlay video written (or kept as <stem>.partial); empty: none
  bool partial = false;
  emaseg::StreamStats stats;  // state and error include the outputs' own failure
};
struct StreamsReport {
  std::string model;
  std::string device;
  int threads = 0;
  int batch = 1;
  int workers = 1;  // model workers
  std::string serving;  // the live view's URL; empty: none
  double seconds = 0;
  bool interrupted = false;
  std::vector<StreamReport> streams;
};
// --json of a multi-stream run, and the body of the live view's /stats.json (pretty: --json).
std::string streams_json(const StreamsReport& r, bool pretty);
// One line per stream and a total, on stderr.
void print_streams_summary(const StreamsReport& r);

}  // namespace emaseg::cli
