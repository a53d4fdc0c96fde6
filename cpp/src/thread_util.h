// Small pieces the pipelines share: background threads, joining threads on any exit, class
// pixel counts.
#pragma once

#include <opencv2/core.hpp>

#include <cstdint>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace emaseg::detail {

// Puts the calling thread in the background while it lives (Linux: SCHED_IDLE, per thread): it
// runs only on cores the normal threads leave idle, so the model's threads do not wait for a core.
// The thread's policy is restored at the end, where the OS allows it. Elsewhere, nothing.
class Background {
 public:
  explicit Background(bool enabled) {
#if defined(__linux__)
    if (!enabled) return;
    tid_ = static_cast<pid_t>(syscall(SYS_gettid));
    policy_ = sched_getscheduler(tid_);
    sched_getparam(tid_, &param_);
    const sched_param idle{};
    if (policy_ < 0 || sched_setscheduler(tid_, SCHED_IDLE, &idle) != 0) policy_ = -1;
#else
    (void)enabled;
#endif
  }
  ~Background() {
#if defined(__linux__)
    if (policy_ >= 0) sched_setscheduler(tid_, policy_, &param_);
#endif
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

 private:
#if defined(__linux__)
  pid_t tid_ = 0;
  int policy_ = -1;
  sched_param param_{};
#endif
};

template <typename Label>
inline void count_rows(const cv::Mat& labels, std::vector<std::uint64_t>& counts) {
  const auto classes = static_cast<long long>(counts.size());
  for (int y = 0; y < labels.rows; ++y) {
    const Label* row = labels.ptr<Label>(y);
    for (int x = 0; x < labels.cols; ++x) {
      const auto label = static_cast<long long>(row[x]);
      if (label >= 0 && label < classes) ++counts[std::size_t(label)];
    }
  }
}

inline void count_classes(const cv::Mat& labels, std::vector<std::uint64_t>& counts) {
  if (labels.depth() == CV_8U) count_rows<std::uint8_t>(labels, counts);
  else count_rows<std::int32_t>(labels, counts);
}

// Joins a thread whatever way the scope is left.
class Joiner {
 public:
  explicit Joiner(std::thread& thread) : thread_(thread) {}
  ~Joiner() {
    if (thread_.joinable()) thread_.join();
  }
  Joiner(const Joiner&) = delete;
  Joiner& operator=(const Joiner&) = delete;

 private:
  std::thread& thread_;
};

}  // namespace emaseg::detail
