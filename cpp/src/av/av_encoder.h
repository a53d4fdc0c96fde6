// One video file being encoded by libavcodec and muxed by libavformat. VideoOutput
// (video_output.cpp) owns one and adds the temporary file, the playback check and the rename.
#pragma once

#include "emaseg/pipeline.h"

#include <memory>
#include <string>

namespace emaseg::av {

class Encoder {
 public:
  // Opens `file` (the muxer is chosen by its extension) and writes its header. `size` must be
  // even. Throws Error(kArgument) for an unknown codec or preset, Error(kOutput) otherwise.
  Encoder(const std::string& file, double fps, cv::Size size, const VideoOutputOptions& options);
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;
  ~Encoder();  // closes the file without finishing it

  void write_bgr(const cv::Mat& bgr);    // CV_8UC3 of size(); converted as options.colour says
  void write_i420(const cv::Mat& i420);  // CV_8UC1, size().height * 3 / 2 rows
  // Flushes the encoder, writes the index (moved before the media for mp4/mov) and closes the
  // file. Throws Error(kOutput) with FFmpeg's reason (e.g. "No space left on device").
  void finish();
  cv::Size size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emaseg::av
