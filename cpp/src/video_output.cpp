#include "emaseg/pipeline.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <filesystem>
#include <system_error>

namespace emaseg {

struct VideoOutput::Impl {
  std::string path;
  cv::Size size;
  cv::VideoWriter writer;
  long long frames = 0;
};

VideoOutput::VideoOutput(const std::string& path, double fps, cv::Size size,
                         const std::string& fourcc)
    : impl_(std::make_unique<Impl>()) {
  if (fourcc.size() != 4)
    throw Error(Error::Kind::kArgument, "fourcc must be 4 characters, got '" + fourcc + "'");
  impl_->path = path;
  impl_->size = size;
  try {  // some backends throw instead of failing to open; both mean the same here
    impl_->writer.open(path, cv::CAP_FFMPEG,
                       cv::VideoWriter::fourcc(fourcc[0], fourcc[1], fourcc[2], fourcc[3]), fps,
                       size);
  } catch (const cv::Exception&) {
  }
  if (!impl_->writer.isOpened())
    throw Error(Error::Kind::kOutput,
                "cannot write video '" + path + "' with fourcc '" + fourcc + "' (does its folder "
                "exist and is it writable? is the extension .mp4, .avi, .mov or .mkv?)");
}

VideoOutput::~VideoOutput() { close(); }

void VideoOutput::write(const cv::Mat& frame) {
  if (frame.size() == impl_->size) {
    impl_->writer.write(frame);
  } else {  // the input changed resolution mid-stream; the container cannot
    cv::Mat resized;
    cv::resize(frame, resized, impl_->size);
    impl_->writer.write(resized);
  }
  ++impl_->frames;
}

void VideoOutput::close() {
  if (!impl_->writer.isOpened()) return;
  impl_->writer.release();
  if (impl_->frames == 0) {
    std::error_code ec;  // best effort: a destructor may be the caller
    std::filesystem::remove(impl_->path, ec);
  }
}

}  // namespace emaseg
