// ema-seg for several cameras at once: one model shared by every stream of a box.
//
//   #include <emaseg/multi_pipeline.h>
//
//   emaseg::Segmenter segmenter("models/emanet_demo.pt2");
//   emaseg::MultiPipeline streams(segmenter, emaseg::read_sources("cameras.txt"));
//   emaseg::StreamEvents events;
//   events.on_frame = [&](std::size_t stream, const emaseg::FrameResult& r) {
//     // r.labels for streams.streams()[stream].name, on that stream's own thread
//   };
//   streams.run(events);  // until every stream ended or failed, or options.stop is set
//
// Each stream decodes on its own thread and consumes its results on another, so a slow or dead
// stream holds up nobody: the model workers (the first on the thread that called run) take the
// streams' frames in turn, one frame of a stream at a time, skipping a stream whose consumer is
// behind. A stream that cannot be opened, or fails for
// good, is marked failed and the others go on. Live streams (network streams, cameras) that end
// or stall are reopened with exponential backoff and jitter; they keep only their newest frame
// while the model is busy, so memory and latency stay flat with any number of streams. Files end
// normally and are never reopened.
#pragma once

#include "emaseg/pipeline.h"

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace emaseg {

struct StreamSpec {
  std::string name;   // unique; letters, digits, '.', '-', '_' (it names files and URLs)
  std::string input;  // a file path, a URL, or "camera:N"
};

// "NAME=PATH_OR_URL" or a bare path or URL per line; blank lines and '#' comments are skipped.
// A bare input is named after its file's stem ("cam" for rtsp://host/cam?x=1); names are made
// unique ("cam", "cam_2"). Throws Error(kInput) if the file cannot be read, Error(kArgument)
// naming the line for a bad NAME or a file without inputs.
std::vector<StreamSpec> read_sources(const std::string& path);
// Names inputs the way read_sources does, after any already in `named`.
std::vector<StreamSpec> name_streams(const std::vector<std::string>& inputs, std::vector<StreamSpec> named = {});
// open_camera for "camera:N", else open_video.
std::unique_ptr<FrameSource> open_stream(const std::string& input, const VideoOptions& options = {});

enum class StreamState { kOpening, kRunning, kReconnecting, kEnded, kFailed };
const char* to_string(StreamState state);  // "opening", "running", "reconnecting", "ended", "failed"

struct StreamStats {
  std::string name;
  StreamState state = StreamState::kOpening;
  bool live = false;
  long long frames = 0;      // delivered to on_frame
  long long dropped = 0;     // live frames discarded because the model was busy
  long long unreadable = 0;  // frames that failed to decode, skipped
  long long reconnects = 0;  // times a live stream came back (was reopened) after it ended or stalled
  double fps = 0;            // frames per second since the stream opened (until it ended)
  LatencySummary latency_ms; // frame read (live: arrival) to on_frame's return
  std::string error;         // why it failed, or the last reason it reconnected
};

struct MultiPipelineOptions {
  VideoOptions video;         // how files and streams are opened (stall timeout, hwaccel, threads)
  long long max_frames = -1;  // per stream; -1: all
  int every = 1;              // run the model on every Nth frame of each stream; others reuse labels
  // Frames of different streams per model call. 0: automatic, which is 1 on the CPU, where one
  // batched call took as long as the calls one by one (README, "Several cameras"), and every
  // stream on CUDA.
  int max_batch = 0;
  int queue_size = 2;  // results waiting for each stream's consumer (files: also frames decoded ahead)
  bool i420_planes = false;  // FrameResult::i420 where the source has the planes
  // Files' decoding and consuming threads run in the background (SCHED_IDLE, see
  // PipelineOptions::background_decoding), filling the cores the model leaves idle.
  bool background = true;
  double reconnect_delay = 1.0;      // seconds before the first reopen; doubles each failed try
  double max_reconnect_delay = 30.0;
  const std::atomic<bool>* stop = nullptr;  // set it to end every stream cleanly
  // How inputs are opened (tests substitute their own); default open_stream.
  std::function<std::unique_ptr<FrameSource>(const StreamSpec&, const VideoOptions&)> open;
};

// Callbacks, each told the stream's index in streams(). Exceptions thrown by on_open or on_frame
// fail that stream only, with their message.
struct StreamEvents {
  // The stream opened for the first time, before its first frame (its decoding thread).
  std::function<void(std::size_t, const FrameSource&)> on_open;
  // Each result in input order (the stream's consuming thread).
  std::function<void(std::size_t, const FrameResult&)> on_frame;
  // Once, after the stream's last frame, with its final stats: state ended or failed (the
  // consuming thread; also for a stream that never opened).
  std::function<void(std::size_t, const StreamStats&)> on_end;
  // A live stream is about to be reopened, in words ("reconnecting in 2.1 s: the stream ended");
  // on its decoding thread. (Failures come with on_end: state failed, error.)
  std::function<void(std::size_t, const std::string&)> on_notice;
};

class MultiPipeline {
 public:
  // Throws Error(kArgument) for no streams, names that are not unique, or bad options.
  MultiPipeline(const Segmenter& segmenter, std::vector<StreamSpec> streams, MultiPipelineOptions options = {});
  // Several model workers, one per Segmenter (load the same model several times, with
  // Options::threads = cores / workers): frames of different streams run at once. On the CPU that
  // is faster than one model using every core (README, "Several cameras").
  MultiPipeline(std::vector<const Segmenter*> models, std::vector<StreamSpec> streams,
                MultiPipelineOptions options = {});
  MultiPipeline(const MultiPipeline&) = delete;
  MultiPipeline& operator=(const MultiPipeline&) = delete;
  ~MultiPipeline();

  // Runs every stream until each has ended or failed, or options.stop is set (frames in flight
  // are still delivered). The first model worker runs on the calling thread. Only an error of
  // the model itself (Error kRuntime) ends every stream; it is rethrown after each stream's on_end.
  void run(const StreamEvents& events);
  // A snapshot, from any thread, during or after run().
  std::vector<StreamStats> stats() const;
  const std::vector<StreamSpec>& streams() const;
  int batch() const;    // frames per model call at most (options.max_batch resolved)
  int workers() const;  // model workers: the Segmenters given

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emaseg
