// Latency percentiles over a ring of the latest samples: bounded memory for endless camera runs.
#pragma once

#include "emaseg/pipeline.h"

#include <algorithm>
#include <ctime>
#include <vector>

namespace emaseg::detail {

// CPU time of the calling thread in milliseconds: the work a stage did, whatever the scheduler
// made it wait (the video stages run at a lower priority than the model's threads).
inline double thread_cpu_ms() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return double(now.tv_sec) * 1e3 + double(now.tv_nsec) * 1e-6;
}

class LatencyRecorder {
 public:
  void add(double ms) {
    if (samples_.size() < kCapacity) {
      samples_.push_back(ms);
    } else {
      samples_[next_] = ms;
      next_ = (next_ + 1) % kCapacity;
    }
  }

  LatencySummary summary() const {
    LatencySummary out;
    if (samples_.empty()) return out;
    std::vector<double> sorted(samples_);
    std::sort(sorted.begin(), sorted.end());
    const auto at = [&sorted](double q) {  // nearest rank
      const auto rank = static_cast<std::size_t>(q * double(sorted.size() - 1) + 0.5);
      return sorted[std::min(rank, sorted.size() - 1)];
    };
    out.count = sorted.size();
    for (double v : sorted) out.mean += v;
    out.mean /= double(sorted.size());
    out.p50 = at(0.50);
    out.p95 = at(0.95);
    out.max = sorted.back();
    return out;
  }

 private:
  static constexpr std::size_t kCapacity = 4096;
  std::vector<double> samples_;
  std::size_t next_ = 0;
};

}  // namespace emaseg::detail
