// ema-seg run outputs: the overlay video, overlay images and label masks of a run, written so
// that a user's data is never lost. ema_seg and emaseg.runtime.process_video both use it.
//
//   #include <emaseg/outputs.h>
//
//   emaseg::OutputOptions out;
//   out.video = "out.mp4";
//   out.mask_dir = "masks";
//   auto source = emaseg::open_video("street.mp4");
//   emaseg::RunOutputs outputs(segmenter, *source, out);  // checks everything, then creates
//   emaseg::run_pipeline(segmenter, *source, [&](const emaseg::FrameResult& r) {
//     outputs.write(r);
//     return true;
//   });
//   outputs.finish();  // out.mp4 appears only now, complete and checked
//
// What it guarantees:
// - Every file is written under a hidden temporary name beside its destination and renamed
//   into place only when complete (video: closed and played back with every frame; images:
//   encoded and written in full). A failed, killed or interrupted run leaves nothing incomplete
//   under a final name; an interrupted run may keep its playable video as <stem>.partial.mp4.
// - No output overwrites an input: outputs are compared with the source's files as files
//   (any spelling: path, file:// URL, symlink, hard link), before the run and at every write.
// - Images whose names share a stem ("shot.png", "shot.jpg") get distinct output names
//   ("shot_png.png", "shot_jpg.png"); notes() says so.
// - Write errors throw Error(kOutput) naming the file and the OS reason ("No space left on
//   device"); the video is checked for room after every frame.
#pragma once

#include "emaseg/pipeline.h"

#include <memory>
#include <string>
#include <vector>

namespace emaseg {

struct OutputOptions {
  std::string video;         // overlay video ("": none)
  std::string overlay_file;  // image input: the overlay of its one image ("": none)
  std::string overlay_dir;   // image input: <stem>_overlay.png for each image ("": none)
  std::string mask_dir;      // label PNGs: frame_%06d.png (video) or <stem>.png (images);
                             // 8-bit, 16-bit beyond 256 classes; for inferred frames only
  double alpha = 0.5;        // overlay opacity
  std::string fourcc = "mp4v";     // "avc1": H.264
  std::string fallback_fourcc;     // written instead, with a note, when `fourcc` cannot be ("": fail)
  std::string preset = "ultrafast";  // H.264: libx264's preset and crf (VideoOutputOptions)
  int crf = 23;
  int encoder_threads = 1;
  double default_fps = 30.0;  // for sources that report no frame rate (cameras, streams)
};

class RunOutputs {
 public:
  // Checks every output against the source's files, creates the folders and opens the video.
  // Throws Error(kOutput) (or kArgument for a bad fourcc); nothing is created then.
  RunOutputs(const Segmenter& segmenter, const FrameSource& source, const OutputOptions& options);
  RunOutputs(const RunOutputs&) = delete;
  RunOutputs& operator=(const RunOutputs&) = delete;
  ~RunOutputs();  // a video that finish() did not complete is deleted

  bool needs_overlay() const;  // a video or overlay images were asked for
  // Writes the frame's outputs. `overlay`: the frame's overlay if the caller made it already
  // (to show it); computed here when empty and needed: on the frame's I420 planes when it has
  // them and only the video needs it. Throws Error(kOutput).
  void write(const FrameResult& result, const cv::Mat& overlay = cv::Mat());
  // CPU milliseconds of the calling thread per written frame, making the overlay and encoding
  // the video (libx264 encodes on the calling thread: VideoOutputOptions::threads 1).
  LatencySummary overlay_ms() const;
  LatencySummary encode_ms() const;
  // Completes the video (checked, renamed to OutputOptions::video). Throws Error(kOutput).
  void finish();
  // For an interrupted run: completes the video as "<stem>.partial<ext>" and returns that
  // path ("" when there is no video or no frame was written).
  std::string finish_partial();

  // Temporary files in use now, for a signal handler that must remove them before it quits.
  std::vector<std::string> temp_files() const;
  // The fourcc the video is written with ("" without a video).
  std::string fourcc() const;
  // Remarks made while planning the outputs (renamed outputs of colliding stems, a codec
  // fallback).
  const std::vector<std::string>& notes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emaseg
