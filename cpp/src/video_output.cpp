// VideoOutput: frames go to a hidden temporary file beside the destination (av/av_encoder.cpp
// encodes them); close() checks that the finished file plays back with every frame and only then
// renames it into place.
#include "emaseg/pipeline.h"

#include "av/av_encoder.h"
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
// full disk leaves it) holds none. Read by OpenCV's own FFmpeg backend: a second opinion.
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

VideoOutputOptions from_fourcc(const std::string& path, const std::string& fourcc) {
  if (fourcc.size() != 4)
    throw Error(Error::Kind::kArgument, "fourcc must be 4 characters, got '" + fourcc + "'");
  VideoOutputOptions options;
  if (fourcc == "avc1" || fourcc == "h264" || fourcc == "H264" || fourcc == "X264") options.codec = "h264";
  else if (fourcc == "mp4v" || fourcc == "FMP4" || fourcc == "XVID" || fourcc == "DIVX") options.codec = "mp4v";
  else throw video_error(path, "no encoder for fourcc '" + fourcc + "' (avc1: H.264, mp4v: MPEG-4 Part 2)");
  return options;
}

// The reason in an encoder's error ("cannot write video 'TEMP': REASON"): the user's message names
// the destination, not the temporary file.
std::string reason_of(const Error& e) {
  const std::string message = e.what();
  const std::size_t at = message.find("': ");
  return at == std::string::npos ? message : message.substr(at + 3);
}

}  // namespace

struct VideoOutput::Impl {
  std::string path;
  std::string temp;
  cv::Size size;     // the frames'
  cv::Rect stored;   // what the file stores of them: even sizes only
  std::unique_ptr<av::Encoder> encoder;
  long long frames = 0;

  void discard() {
    encoder.reset();
    if (!temp.empty()) std::remove(temp.c_str());
    temp.clear();
  }

  // A write error: the temporary file goes, and the error names the destination.
  [[noreturn]] void fail(const Error& e) {
    const bool full = detail::disk_full(temp);
    discard();
    throw video_error(path, full ? std::string(std::strerror(ENOSPC)) : reason_of(e));
  }

  // Closes the encoder and moves the checked file to `destination`; "" without frames.
  std::string finish(const std::string& destination) {
    if (!encoder) return {};
    try {
      if (frames > 0) encoder->finish();
    } catch (const Error& e) {
      fail(e);
    }
    encoder.reset();
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

  void check_open() const {
    if (!encoder) throw Error(Error::Kind::kArgument, "write() after close()");
  }
};

VideoOutput::VideoOutput(const std::string& path, double fps, cv::Size size, const std::string& fourcc)
    : VideoOutput(path, fps, size, from_fourcc(path, fourcc)) {}

VideoOutput::VideoOutput(const std::string& path, double fps, cv::Size size, const VideoOutputOptions& options)
    : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  const fs::path folder = fs::path(path).parent_path();
  if (!folder.empty() && !fs::is_directory(folder, ec))
    throw video_error(path, "folder '" + folder.string() + "' does not exist");
  if (fs::is_directory(path, ec)) throw video_error(path, "it is a folder");
  if (size.width < 2 || size.height < 2) throw video_error(path, "frames must be at least 2x2");
  impl_->path = path;
  impl_->size = size;
  impl_->stored = cv::Rect(0, 0, size.width / 2 * 2, size.height / 2 * 2);
  impl_->temp = detail::make_temp_beside(path);
  try {
    impl_->encoder = std::make_unique<av::Encoder>(impl_->temp, fps, impl_->stored.size(), options);
  } catch (const Error& e) {
    impl_->discard();
    if (e.kind() != Error::Kind::kOutput) throw;
    throw video_error(path, reason_of(e) + (fs::path(path).extension().empty() ? " (use .mp4, .mov or .mkv)" : ""));
  }
}

VideoOutput::~VideoOutput() { impl_->discard(); }

void VideoOutput::write(const cv::Mat& frame) {
  impl_->check_open();
  if (frame.type() != CV_8UC3) throw Error(Error::Kind::kArgument, "VideoOutput::write needs a CV_8UC3 frame");
  cv::Mat fitted = frame;
  if (frame.size() != impl_->size) {  // the input changed resolution mid-stream; the container cannot
    cv::resize(frame, fitted, impl_->size);
  }
  if (impl_->stored.size() != impl_->size) fitted = fitted(impl_->stored).clone();
  else if (!fitted.isContinuous()) fitted = fitted.clone();
  try {
    impl_->encoder->write_bgr(fitted);
  } catch (const Error& e) {
    impl_->fail(e);
  }
  ++impl_->frames;
}

void VideoOutput::write_i420(const cv::Mat& i420) {
  impl_->check_open();
  const cv::Size stored = impl_->stored.size();
  if (i420.type() != CV_8UC1 || !i420.isContinuous() || i420.cols != stored.width ||
      i420.rows != stored.height * 3 / 2)
    throw Error(Error::Kind::kArgument, "write_i420 needs continuous I420 planes of the video's size");
  try {
    impl_->encoder->write_i420(i420);
  } catch (const Error& e) {
    impl_->fail(e);
  }
  ++impl_->frames;
}

void VideoOutput::close() { impl_->finish(impl_->path); }

std::string VideoOutput::close_partial() { return impl_->finish(detail::partial_name(impl_->path)); }

const std::string& VideoOutput::path() const { return impl_->path; }
const std::string& VideoOutput::temp_path() const { return impl_->temp; }
long long VideoOutput::frames() const { return impl_->frames; }

}  // namespace emaseg
