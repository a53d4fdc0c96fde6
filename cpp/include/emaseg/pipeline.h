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

// How a source's YUV samples map to colours: ITU-T H.273 codes, which FFmpeg's AVColorSpace,
// AVColorPrimaries and AVColorTransferCharacteristic share (2: unspecified; matrix 1: BT.709,
// 5 or 6: BT.601). An overlay video made from the source's own planes carries the same tags.
struct VideoColour {
  int matrix = 2;
  int primaries = 2;
  int transfer = 2;
};

// Where frames come from; open_video, open_camera and open_images make the usual ones.
class FrameSource {
 public:
  enum class Status { kFrame, kUnreadable, kEnd };
  virtual ~FrameSource() = default;
  // Next frame (BGR, CV_8UC3) and its name (the image's path; empty for video). kUnreadable:
  // an input frame could not be decoded and was skipped (`name` says which, if known);
  // reading may go on. Called from the pipeline's decoding thread.
  virtual Status read(cv::Mat& frame, std::string& name) = 0;
  // read(), and the frame's own I420 planes (CV_8UC1, height * 3 / 2 rows: Y, then U, then V, as
  // cv::COLOR_YUV2BGR_I420 takes them) when the decoder gave 8-bit 4:2:0 in limited range at an
  // even size; `i420` is left empty otherwise. The overlay video is made from them then, without
  // a second full-frame colour conversion.
  virtual Status read(cv::Mat& frame, cv::Mat& i420, std::string& name) {
    i420.release();
    return read(frame, name);
  }
  virtual VideoColour colour() const { return {}; }  // the tags of the planes read() gives
  virtual std::string decoder() const { return {}; }  // e.g. "h264 (1 thread)"; "" if not FFmpeg's
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

struct VideoOptions {
  // Seconds a file or stream may give no data (while opening, or between two packets) before
  // reading fails with Error(kInput): a stalled or vanished stream never hangs a run. 0: wait
  // forever.
  double stall_timeout = 10.0;
  // Hardware decoding: "none", "cuda" (NVDEC), "vaapi", or "auto" (NVDEC when `device` is CUDA
  // and FFmpeg can use it, else software). cuda and vaapi fail with Error(kDevice) where the
  // device or the decoder's support is missing; auto then decodes in software.
  std::string hwaccel = "none";
  std::string device = "cpu";  // the model's device, for hwaccel "auto"
  // Decoder threads. Explicit, because FFmpeg's default (one per core) competes with the
  // model's threads for the same cores.
  int threads = 1;
  // Set (e.g. by a signal handler): a blocking open or read gives up at once; open_video then
  // throws Error(kInput) ("interrupted"), read() ends the input.
  const std::atomic<bool>* stop = nullptr;
};

// All of these throw Error(kInput) if the input cannot be opened or yields no frame at all.
// A file path or a URL (rtsp://, http://, ...), decoded by FFmpeg's libavformat and libavcodec;
// the BGR frames are byte for byte those of cv::VideoCapture. Network streams without a known
// length (rtsp, udp, live HLS, ...) are live; a local file never is, even when its container
// reports no frame count (e.g. raw MJPEG). A live stream that stalls or fails mid-run makes
// read() throw Error(kInput) naming the reason.
std::unique_ptr<FrameSource> open_video(const std::string& path_or_url, const VideoOptions& options = {});
std::unique_ptr<FrameSource> open_camera(int index);
// A folder (its image files, sorted by name), a glob pattern ("frames/*.png") or one image.
std::unique_ptr<FrameSource> open_images(const std::string& folder_or_pattern);
// Exactly one image file; Error(kInput) for a folder, a pattern or a missing file.
std::unique_ptr<FrameSource> open_image(const std::string& path);

struct FrameResult {
  long long index = 0;   // position in the input (dropped and unreadable frames count too)
  std::string name;      // the image's path for image inputs, else empty
  cv::Mat frame;         // BGR input
  cv::Mat i420;          // its decoded planes (see FrameSource::read), with PipelineOptions::
                         // i420_planes; else empty
  cv::Mat labels;        // its labels, at the frame's size; for reused frames those of the
                         // last inferred frame (resized if the input changed resolution)
  bool inferred = true;  // false: PipelineOptions::every skipped the model for this frame
  double model_ms = 0;   // Segmenter::segment time (0 if not inferred)
};

struct PipelineOptions {
  int every = 1;              // run the model on every Nth delivered frame; others reuse labels
  long long max_frames = -1;  // read at most this many input frames (-1: all)
  int queue_size = 4;         // frames buffered between stages for non-live sources
  // Files and image folders: decode only while the model is not running (the model-only
  // figure of a benchmark). Default false: decoding runs beside the model, in the background.
  bool decode_between_frames = false;
  // Linux: files and images are decoded by a background thread (SCHED_IDLE), which runs only on
  // cores the model's threads leave idle, so it does not stall them (1080p H.264 on 2 cores, with
  // the sink in the background too: end to end 0.90 of model-only, against 0.65 taking turns and
  // 0.82 at nice 19). Live sources decode at the caller's priority: a camera does not wait.
  bool background_decoding = true;
  // The same for the caller's thread, where the sink runs, during run_pipeline (ema_seg: its
  // overlay encoding); its policy is restored on return.
  bool background_sink = false;
  // Set it (e.g. from a signal handler) to stop reading; frames already read still go
  // through the model and the sink, so outputs end cleanly.
  const std::atomic<bool>* stop = nullptr;
  // Fill FrameResult::i420 where the source has the planes (an overlay video made from them).
  bool i420_planes = false;
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
  // FrameSource::read per frame (decoding and the conversion to BGR): CPU time of the decoding
  // thread, its work whatever the model's threads made it wait.
  LatencySummary decode_ms;
  LatencySummary model_ms;    // Segmenter::segment, per inferred frame
  LatencySummary latency_ms;  // decode start (live: frame arrival) to sink return, per frame
};

struct VideoOutputOptions {
  std::string codec = "h264";  // "h264" (libx264, yuv420p: browsers play it) or "mp4v" (MPEG-4 Part 2)
  // libx264's speed against file size: ultrafast ... veryslow, and its constant rate factor
  // (0-51, lower is better and bigger). The defaults were measured (README, "Video path").
  std::string preset = "ultrafast";
  int crf = 23;
  int threads = 1;      // encoder threads, explicit like the decoder's
  VideoColour colour;   // tags of the planes given to write_i420 (and the matrix BGR frames are
                        // converted with: BT.709 for matrix 1, else BT.601)
};

// An overlay video written by FFmpeg's libavformat/libavcodec; an mp4 or mov has its index
// before the media (+faststart), so a browser plays it while it downloads. Frames go to a hidden
// temporary file beside `path`; close() finishes it, checks that it plays back with every frame and
// only then renames it to `path`. A VideoOutput destroyed without close() (an exception, a
// failed run) deletes its temporary file and leaves nothing under `path`; so does close()
// without a frame, since an mp4 without frames does not play.
// Throws Error(kArgument) for a fourcc not 4 characters long, an unknown codec or preset,
// Error(kOutput) if the file cannot be opened for writing or there is no encoder for the codec
// or fourcc. Odd sizes are written
// cropped to even ones (4:2:0 video stores even sizes only).
class VideoOutput {
 public:
  VideoOutput(const std::string& path, double fps, cv::Size size, const VideoOutputOptions& options);
  // "avc1", "h264", "H264", "X264": H.264; "mp4v", "FMP4", "XVID", "DIVX": MPEG-4 Part 2.
  VideoOutput(const std::string& path, double fps, cv::Size size, const std::string& fourcc = "mp4v");
  VideoOutput(const VideoOutput&) = delete;
  VideoOutput& operator=(const VideoOutput&) = delete;
  ~VideoOutput();  // discards what close() did not finish

  // Frames of another size (the input changed resolution mid-stream) are resized to `size`.
  // Throws Error(kOutput) when the disk is full (the temporary file is removed then).
  void write(const cv::Mat& frame);
  // An I420 frame (see FrameSource::read) of `size`, encoded as it is. Throws like write().
  void write_i420(const cv::Mat& i420);
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
  struct Impl;  // keeps FFmpeg out of the public headers
  std::unique_ptr<Impl> impl_;
};

// Receives results in input order on the thread that called run_pipeline. False stops the run.
using FrameSink = std::function<bool(const FrameResult&)>;

// Decodes on one thread, runs the model on a second, and calls `sink` on the calling thread.
// The first exception of any stage (model, input, sink) stops all three and is rethrown here;
// after an input error the frames already read are delivered first.
PipelineStats run_pipeline(const Segmenter& segmenter, FrameSource& source, const FrameSink& sink,
                           const PipelineOptions& options = {});

}  // namespace emaseg
