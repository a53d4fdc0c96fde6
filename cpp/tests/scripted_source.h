// A FrameSource that plays a script: frames 0..count-1 (a red block moving per frame), some
// unreadable, one of the wrong type, a read that throws, live or not. The pipeline tests use it.
#pragma once

#include <emaseg/emaseg.h>
#include <emaseg/pipeline.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

namespace check {

using emaseg::Error;
using emaseg::FrameSource;

inline cv::Mat frame_for(long long index) {  // a different red block position per frame
  cv::Mat image(24, 32, CV_8UC3, cv::Scalar(90, 90, 90));
  image(cv::Rect(int(index % 24), 4, 8, 8)).setTo(cv::Scalar(40, 40, 230));
  return image;
}

// Frames 0..count-1; indices listed in `unreadable` fail; `bad_type_at` yields a CV_8UC1 frame.
class ScriptedSource final : public FrameSource {
 public:
  ScriptedSource(long long count, bool live, std::set<long long> unreadable = {},
                 long long bad_type_at = -1, long long throw_at = -1, int read_ms = 0)
      : count_(count), live_(live), unreadable_(std::move(unreadable)),
        bad_type_at_(bad_type_at), throw_at_(throw_at), read_ms_(read_ms) {}

  Status read(cv::Mat& frame, std::string& name) override {
    if (read_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_ms_));  // a camera's pace
    if (next_ >= count_) return Status::kEnd;
    const long long index = next_++;
    if (index == throw_at_) throw Error(Error::Kind::kInput, "scripted read failure");
    name = "frame" + std::to_string(index);
    if (unreadable_.count(index)) return Status::kUnreadable;
    frame = index == bad_type_at_ ? cv::Mat(24, 32, CV_8UC1, cv::Scalar(0)) : frame_for(index);
    return Status::kFrame;
  }
  bool live() const override { return live_; }
  double fps() const override { return 25.0; }
  long long frame_count() const override { return count_; }
  cv::Size frame_size() const override { return {32, 24}; }
  std::string description() const override { return "scripted"; }

 private:
  long long count_;
  bool live_;
  std::set<long long> unreadable_;
  long long bad_type_at_;
  long long throw_at_;
  int read_ms_;
  long long next_ = 0;
};

}  // namespace check
