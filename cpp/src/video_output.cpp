// VideoOutput: frames go to a hidden temporary file beside the destination; close() checks that
// the finished file plays back with every frame and only then renames it into place.
#include "emaseg/pipeline.h"

#include "output_files.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

namespace emaseg {
namespace {

namespace fs = std::filesystem;

Error video_error(const std::string& path, const std::string& why) {
  return Error(Error::Kind::kOutput, "cannot write video '" + path + "': " + why);
}

// Frames the file really holds: a video that does not open (an mp4 without its index, as a
// full disk leaves it) holds none.
bool plays_back(const std::string& file, long long frames) {
  cv::VideoCapture capture;
  try {
    capture.open(file, cv::CAP_FFMPEG);
  } catch (const cv::Exception&) {
    return false;
  }
  cv::Mat first;
  if (!capture.isOpened() || !capture.read(first) || first.empty()) return false;
  const double count = capture.get(cv::CAP_PROP_FRAME_COUNT);
  // Containers without an exact count estimate it from duration x fps: allow one frame off.
  return !(count > 0) || std::abs(count - double(frames)) <= 1.0;
}

}  // namespace

struct VideoOutput::Impl {
  std::string path;
  std::string temp;
  cv::Size size;
  cv::VideoWriter writer;
  long long frames = 0;
  bool open = false;

  void discard() {
    if (writer.isOpened()) writer.release();
    if (!temp.empty()) std::remove(temp.c_str());
    temp.clear();
    open = false;
  }

  // Closes the writer and moves the checked file to `destination`; "" without frames.
  std::string finish(const std::string& destination) {
    if (!open) return {};
    writer.release();
    open = false;
    const std::string file = std::exchange(temp, std::string());
    if (frames == 0) {  // an mp4 without frames does not play: leave nothing
      std::remove(file.c_str());
      return {};
    }
    if (!plays_back(file, frames)) {
      const bool full = detail::disk_full(file);
      std::remove(file.c_str());
      throw video_error(path, full ? std::strerror(ENOSPC)
                                   : "the finished file does not play back (FFmpeg reported no "
                                     "error; is there room on the disk?)");
    }
    detail::publish(file, destination);
    return destination;
  }
};

VideoOutput::VideoOutput(const std::string& path, double fps, cv::Size size,
                         const std::string& fourcc)
    : impl_(std::make_unique<Impl>()) {
  if (fourcc.size() != 4)
    throw Error(Error::Kind::kArgument, "fourcc must be 4 characters, got '" + fourcc + "'");
  std::error_code ec;
  const fs::path folder = fs::path(path).parent_path();
  if (!folder.empty() && !fs::is_directory(folder, ec))
    throw video_error(path, "folder '" + folder.string() + "' does not exist");
  if (fs::is_directory(path, ec)) throw video_error(path, "it is a folder");
  impl_->path = path;
  impl_->size = size;
  impl_->temp = detail::make_temp_beside(path);
  try {  // some backends throw instead of failing to open; both mean the same here
    impl_->writer.open(impl_->temp, cv::CAP_FFMPEG,
                       cv::VideoWriter::fourcc(fourcc[0], fourcc[1], fourcc[2], fourcc[3]), fps,
                       size);
  } catch (const cv::Exception&) {
  }
  if (!impl_->writer.isOpened()) {
    impl_->discard();
    throw video_error(path, "FFmpeg cannot write fourcc '" + fourcc + "' into a " +
                                (fs::path(path).extension().empty()
                                     ? std::string("file without extension")
                                     : fs::path(path).extension().string() + " file") +
                                " (use .mp4, .avi, .mov or .mkv)");
  }
  impl_->open = true;
}

VideoOutput::~VideoOutput() { impl_->discard(); }

void VideoOutput::write(const cv::Mat& frame) {
  if (!impl_->open) throw Error(Error::Kind::kArgument, "write() after close()");
  if (frame.size() == impl_->size) {
    impl_->writer.write(frame);
  } else {  // the input changed resolution mid-stream; the container cannot
    cv::Mat resized;
    cv::resize(frame, resized, impl_->size);
    impl_->writer.write(resized);
  }
  ++impl_->frames;
  // OpenCV's writer drops write errors; a full disk is the one worth catching early.
  if (detail::disk_full(impl_->temp)) {
    impl_->discard();
    throw video_error(impl_->path, std::strerror(ENOSPC));
  }
}

void VideoOutput::close() { impl_->finish(impl_->path); }

std::string VideoOutput::close_partial() { return impl_->finish(detail::partial_name(impl_->path)); }

const std::string& VideoOutput::path() const { return impl_->path; }
const std::string& VideoOutput::temp_path() const { return impl_->temp; }
long long VideoOutput::frames() const { return impl_->frames; }

}  // namespace emaseg
