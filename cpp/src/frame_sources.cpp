// FrameSource implementations: cameras through OpenCV's VideoCapture, and image lists. Video files
// and network streams are decoded by FFmpeg directly (av/av_video_source.cpp).
#include "emaseg/pipeline.h"

#include "output_files.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace emaseg {
namespace {

namespace fs = std::filesystem;

// How many failed reads in a row end a video: a decoder may fail on a damaged frame and
// recover on the next one, but a finished or broken input fails every time.
constexpr int kMaxConsecutiveFailures = 8;
constexpr double kMaxFps = 1000.0;  // beyond it a reported frame rate is taken as unknown

// A camera through OpenCV's VideoCapture: live, of unknown length, read at its own pace.
class CameraSource final : public FrameSource {
 public:
  CameraSource(cv::VideoCapture capture, std::string description)
      : capture_(std::move(capture)), description_(std::move(description)) {
    fps_ = capture_.get(cv::CAP_PROP_FPS);
    // Read the first frame now: it proves the camera delivers and gives the true frame size.
    if (!next(first_))
      throw Error(Error::Kind::kInput, description_ + " opened but no frame could be decoded");
  }

  Status read(cv::Mat& frame, std::string& name) override {
    name.clear();
    if (pending_unreadable_ > 0) {
      --pending_unreadable_;
      return Status::kUnreadable;
    }
    if (!first_.empty()) {
      frame = std::move(first_);
      first_.release();
      return Status::kFrame;
    }
    if (ended_) return Status::kEnd;
    if (!next(frame)) {
      ended_ = true;
      return Status::kEnd;
    }
    if (pending_unreadable_ > 0) {  // failures before this frame: report them first
      first_ = std::move(frame);
      --pending_unreadable_;
      return Status::kUnreadable;
    }
    return Status::kFrame;
  }

  bool live() const override { return true; }
  // Drivers without timing guess; beyond kMaxFps a rate is taken as unknown.
  double fps() const override { return fps_ > 0 && fps_ <= kMaxFps ? fps_ : 0.0; }
  long long frame_count() const override { return -1; }
  cv::Size frame_size() const override { return size_; }
  std::string description() const override { return description_; }

 private:
  // The next frame; failures in between become pending_unreadable_.
  bool next(cv::Mat& frame) {
    int failures = 0;
    while (failures < kMaxConsecutiveFailures) {
      cv::Mat decoded;  // fresh each time: queued frames must not share a buffer
      if (capture_.read(decoded) && !decoded.empty()) {
        if (decoded.type() != CV_8UC3) {
          ++failures;  // e.g. a backend that ignores CONVERT_RGB
          continue;
        }
        if (size_.empty()) size_ = decoded.size();
        pending_unreadable_ += failures;
        frame = std::move(decoded);
        return true;
      }
      ++failures;
    }
    return false;
  }

  cv::VideoCapture capture_;
  std::string description_;
  double fps_ = 0;
  cv::Size size_;
  cv::Mat first_;
  int pending_unreadable_ = 0;
  bool ended_ = false;
};

class ImageSource final : public FrameSource {
 public:
  ImageSource(std::vector<std::string> paths, std::string description)
      : paths_(std::move(paths)), description_(std::move(description)) {
    for (first_index_ = 0; first_index_ < paths_.size(); ++first_index_) {
      first_ = load(paths_[first_index_]);
      if (!first_.empty()) break;
    }
    if (first_.empty())
      throw Error(Error::Kind::kInput, "none of the " + std::to_string(paths_.size()) +
                                           " image(s) of " + description_ + " could be read");
    size_ = first_.size();
  }

  Status read(cv::Mat& frame, std::string& name) override {
    if (next_ >= paths_.size()) return Status::kEnd;
    name = paths_[next_];
    if (next_ < first_index_) {  // already found unreadable while looking for the first image
      ++next_;
      return Status::kUnreadable;
    }
    frame = next_ == first_index_ ? std::move(first_) : load(name);
    ++next_;
    return frame.empty() ? Status::kUnreadable : Status::kFrame;
  }

  bool live() const override { return false; }
  double fps() const override { return 0.0; }
  long long frame_count() const override { return static_cast<long long>(paths_.size()); }
  cv::Size frame_size() const override { return size_; }
  std::string description() const override { return description_; }
  std::vector<std::string> files() const override { return paths_; }
  bool images() const override { return true; }

 private:
  static cv::Mat load(const std::string& path) {
    try {
      return cv::imread(path, cv::IMREAD_COLOR);  // always 8-bit BGR
    } catch (const cv::Exception&) {
      return {};  // some codecs throw on damaged files instead of returning nothing
    }
  }

  std::vector<std::string> paths_;
  std::string description_;
  cv::Size size_;
  cv::Mat first_;
  std::size_t first_index_ = 0;
  std::size_t next_ = 0;
};

// A folder's image files, as OpenCV sees them: a name it has a codec for (so a damaged "x.png"
// is listed and then reported, not silently skipped) or contents it recognises. Hidden files,
// the temporaries of atomic writes among them, are never inputs.
bool is_image_file(const fs::path& path) {
  const std::string name = path.filename().string();
  if (name.empty() || name.front() == '.') return false;
  try {
    return cv::haveImageWriter(path.string()) || cv::haveImageReader(path.string());
  } catch (const cv::Exception&) {
    return false;
  }
}

}  // namespace

std::unique_ptr<FrameSource> open_camera(int index) {
  const std::string description = "camera " + std::to_string(index);
  cv::VideoCapture capture;
  try {
    capture.open(index, cv::CAP_ANY);
  } catch (const cv::Exception&) {
  }
  if (!capture.isOpened())
    throw Error(Error::Kind::kInput, "cannot open " + description +
                                         " (is it connected, and not in use by another program?)");
  return std::make_unique<CameraSource>(std::move(capture), description);
}

std::unique_ptr<FrameSource> open_images(const std::string& folder_or_pattern) {
  std::vector<std::string> paths;
  std::string description;
  std::error_code ec;
  if (fs::is_directory(folder_or_pattern, ec)) {
    description = "folder '" + folder_or_pattern + "'";
    for (const auto& entry : fs::directory_iterator(folder_or_pattern, ec))
      if (entry.is_regular_file(ec) && is_image_file(entry.path()))
        paths.push_back(entry.path().string());
    if (ec) throw Error(Error::Kind::kInput, "cannot list " + description + ": " + ec.message());
  } else if (fs::is_regular_file(folder_or_pattern, ec)) {
    description = "image '" + folder_or_pattern + "'";
    paths.push_back(folder_or_pattern);
  } else if (folder_or_pattern.find_first_of("*?[") != std::string::npos) {
    description = "pattern '" + folder_or_pattern + "'";
    std::vector<cv::String> matches;
    try {
      cv::glob(folder_or_pattern, matches, false);
    } catch (const cv::Exception&) {
    }
    paths.assign(matches.begin(), matches.end());
  } else {
    detail::input_status(folder_or_pattern, "'" + folder_or_pattern + "'");  // throws: gone or unreadable
    throw Error(Error::Kind::kInput, "'" + folder_or_pattern + "' is neither a folder, an image file nor a pattern");
  }
  if (paths.empty()) throw Error(Error::Kind::kInput, "no image files in " + description);
  std::sort(paths.begin(), paths.end());
  return std::make_unique<ImageSource>(std::move(paths), description);
}

std::unique_ptr<FrameSource> open_image(const std::string& path) {
  const fs::file_status status = detail::input_status(path, "image '" + path + "'");
  if (fs::is_directory(status))
    throw Error(Error::Kind::kInput, "'" + path + "' is a folder; --image takes one file, "
                                     "--images a folder or a pattern");
  if (!fs::is_regular_file(status))
    throw Error(Error::Kind::kInput, "image '" + path + "' is not a file");
  return std::make_unique<ImageSource>(std::vector<std::string>{path}, "image '" + path + "'");
}

}  // namespace emaseg
