// What travels between a pipeline's threads: a decoded frame, then the frame with its labels,
// then the FrameResult a sink sees. run_pipeline and MultiPipeline share them.
#pragma once

#include "emaseg/pipeline.h"

#include <chrono>
#include <string>
#include <utility>

namespace emaseg::detail {

using Clock = std::chrono::steady_clock;

struct Decoded {
  long long index = 0;
  std::string name;
  cv::Mat frame;
  cv::Mat i420;
  Clock::time_point start;  // read started (live: the frame arrived), for the latency
};

struct Segmented {
  Decoded input;
  cv::Mat labels;
  bool inferred = false;
  double model_ms = 0;
};

inline FrameResult to_result(Segmented&& item) {
  FrameResult result;
  result.index = item.input.index;
  result.name = std::move(item.input.name);
  result.frame = std::move(item.input.frame);
  result.i420 = std::move(item.input.i420);
  result.labels = std::move(item.labels);
  result.inferred = item.inferred;
  result.model_ms = item.model_ms;
  return result;
}

}  // namespace emaseg::detail
