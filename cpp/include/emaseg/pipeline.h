// ema-seg video pipeline: decode, segment and consume frames on three threads with bounded
// queues, for files, cameras, network streams and folders of images.
//
//   #include <emaseg/pipeline.h>
//
//   emaseg::Segmenter segmenter("models/emanet_demo.pt");
//   auto source = emaseg::open_video("street.mp4");  // or open_camera(0), open_images("dir/")
//   emaseg::VideoOutput writer("out.mp4", source->fps(), source->frame_size());
//   emaseg::PipelineStats stats = emaseg::run_pipeline(segmenter, *source,
//       [&](const emaseg::FrameResult& r) {
//         writer.write(segmenter.overlay(r.frame, r.labels));
//         return true;  // false stops the run
//       });
//   writer.close();  // out.mp4 appears now, complete and checked (see emaseg/outputs.h for
//                    // masks, image overlays and the guards that keep inputs safe)
//
// Memory stays flat for inputs of any length: at most a few frames are in flight. Live sources
// (cameras, streams) keep only the newest decoded frame when the model is slower than the
// source, and count the frames they drop.
#pragma once

#include "emaseg/emaseg.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace emaseg {

// Where frames come from; open_video, open_camera and open_images make the usual ones.
class FrameSource {
 public:
  enum class Status { kFrame, kUnreadable, kEnd };
  virtual ~FrameSource() = default;
  // Next frame (BGR, CV_8UC3) and its name (the image's path; empty for video). kUnreadable:
  // an input frame could not be decoded and was skipped (`name` says which, if known);
  // reading may go on. Called from the pipeline's decoding thread.
  virtual Status read(cv::Mat& frame, std::string& name) = 0;
  // Cameras and network streams run at their own pace: the pipeline drops old frames for them.
  virtual bool live() const = 0;
  virtual double fps() const = 0;              // 0 when unknown
  virtual long long frame_count() const = 0;   // -1 when unknown (cameras, live streams)
  virtual cv::Size frame_size() const = 0;     // size of the first frame
  virtual std::string description() const = 0;  // for messages
  // The local files frames are read from (the images, or the video file however its name was
  // spelled: path or file:// URL), so that outputs can refuse to overwrite them. Empty for
  // cameras and network streams.
  virtual std::vector<std::string> files() const { return {}; }
  // True for image lists: each frame is a file of its own, and one bad file need not end a run.
  virtual bool images() const { return false; }
};

// All three throw Error(kInput) if the input cannot be opened or yields no frame at all.
// A file path or a URL (rtsp://, http://, ...), decoded by OpenCV's FFmpeg backend. Network
// streams without a known length (rtsp, udp, live HLS, ...) are live; a local file never is,
// even when its container reports no frame count (e.g. raw MJPEG).
std::unique_ptr<FrameSource> open_video(const std::string& path_or_url);
std::unique_ptr<FrameSource> open_camera(int index);
// A folder (its image files, sorted by name), a glob pattern ("frames/*.png") or one image.
std::unique_ptr<FrameSource> open_images(const std::string& folder_or_pattern);
// Exactly one image file; Error(kInput) for a folder, a pattern or a missing file.
std::unique_ptr<FrameSource> open_image(const std::string& path);

struct FrameResult {
  long long index = 0;   // position in the input (dropped and unreadable frames count too)
  std::string name;      // the image's path for image inputs, else empty
  cv::Mat frame;         // BGR input
  cv::Mat labels;        // its labels, at the frame's size; for reused frames those of the
                         // last inferred frame (resized if the input changed resolution)
  bool inferred = true;  // false: PipelineOptions::every skipped the model for this frame
  double model_ms = 0;   // Segmenter::segment time (0 if not inferred)
};

struct PipelineOptions {
  int every = 1;              // run the model on every Nth delivered frame; others reuse labels
  long long max_frames = -1;  // read at most this many input frames (-1: all)
  int queue_size = 4;         // frames buffered between stages for non-live sources
  // Files and image folders: decode only while the model is not running. The model's LibTorch
  // threads fill the cores (Options::threads = the core count), and a decoding thread beside
  // them stalls their barriers: demo at 1080p on 2 cores, model 37 ms with decoding beside it
  // against 24 ms alone. False overlaps them (worth it when the model leaves a core free).
  // Live sources always decode beside the model: a camera does not wait.
  bool decode_between_frames = true;
  // Set it (e.g. from a signal handler) to stop reading; frames already read still go
  // through the model and the sink, so outputs end cleanly.
  const std::atomic<bool>* stop = nullptr;
  // Told about each skipped unreadable frame, on the decoding thread.
  std::function<void(long long index, const std::string& name)> on_unreadable;
  // Image inputs only (FrameSource::images()): an image the model refuses (Error kArgument:
  // too small, too many pixels) is skipped and told here, on the model thread, and the run
  // goes on. Unset, or for video, such an error ends the run.
  std::function<void(long long index, const std::string& name, const std::string& message)>
      on_frame_error;
};

struct LatencySummary {  // milliseconds, over the last 4096 frames
  std::size_t count = 0;
  double mean = 0, p50 = 0, p95 = 0, max = 0;
};

struct PipelineStats {
  long long read = 0;        // frames decoded
  long long delivered = 0;   // frames handed to the sink
  long long inferred = 0;    // delivered frames the model ran on
  long long reused = 0;      // delivered frames with the previous labels (every > 1)
  long long dropped = 0;     // live frames discarded because the model was behind
  long long unreadable = 0;  // input frames that failed to decode, skipped
  long long failed = 0;      // images the model refused, skipped (PipelineOptions::on_frame_error)
  double seconds = 0;        // wall time of run_pipeline
  bool stopped = false;      // ended by PipelineOptions::stop or the sink, not by the input
  std::vector<std::uint64_t> class_pixels;  // pixels per class over inferred frames
  LatencySummary model_ms;    // Segmenter::segment, per inferred frame
  LatencySummary latency_ms;  // decode start (live: frame arrival) to sink return, per frame
};

// An overlay video written through OpenCV's FFmpeg backend. Frames go to a hidden temporary
// file beside `path`; close() finishes it, checks that it plays back with every frame and
// only then renames it to `path`. A VideoOutput destroyed without close() (an exception, a
// failed run) deletes its temporary file and leaves nothing under `path`; so does close()
// without a frame, since an mp4 without frames does not play.
// Throws Error(kArgument) if `fourcc` is not 4 characters, Error(kOutput) if the file cannot be
// opened for writing.
class VideoOutput {
 public:
  VideoOutput(const std::string& path, double fps, cv::Size size,
              const std::string& fourcc = "mp4v");
  VideoOutput(const VideoOutput&) = delete;
  VideoOutput& operator=(const VideoOutput&) = delete;
  ~VideoOutput();  // discards what close() did not finish

  // Frames of another size (the input changed resolution mid-stream) are resized to `size`.
  // Throws Error(kOutput) when the disk is full (the temporary file is removed then).
  void write(const cv::Mat& frame);
  // Finishes the file and renames it to path(). Throws Error(kOutput) with the reason if the
  // finished file does not play back (a full disk); nothing is left behind then. Later calls
  // do nothing.
  void close();
  // For an interrupted run: finishes the video like close(), but under "<stem>.partial<ext>"
  // beside path(), so that it cannot be mistaken for a finished one. Returns that path, or ""
  // when no frame was written.
  std::string close_partial();
  const std::string& path() const;
  const std::string& temp_path() const;  // where frames go until close(); "" once closed
  long long frames() const;              // frames written so far

 private:
  struct Impl;  // keeps opencv_videoio out of the public headers
  std::unique_ptr<Impl> impl_;
};

// Receives results in input order on the thread that called run_pipeline. False stops the run.
using FrameSink = std::function<bool(const FrameResult&)>;

// Decodes on one thread, runs the model on a second, and calls `sink` on the calling thread.
// The first exception of any stage (model, input, sink) stops all three and is rethrown here.
PipelineStats run_pipeline(const Segmenter& segmenter, FrameSource& source, const FrameSink& sink,
                           const PipelineOptions& options = {});

}  // namespace emaseg
