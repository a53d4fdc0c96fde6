// The frame half of a .pt2 package (format version 2): what runs around its compiled network
// models at any frame size, bit for bit what python/emaseg/export/network.py (and so the .pt
// file's SegmentationModule) computes:
//   - the exact uint8 resize of the BGR frame to the network input (OpenCV 5's INTER_LINEAR
//     fixed-point arithmetic, emaseg.resize);
//   - the labels at the frame size from the network-size scores and per-cell labels
//     (emaseg.frame_labels.labels_from_cells): a copy where a cell's label is sure, the
//     bilinear formula and argmax only where it is in doubt;
//   - the softmax probabilities at the frame size (ATen's own bilinear resize and softmax).
// The compiled code then depends only on the network input size, which follows from the
// frame's aspect ratio: a handful of compiled sizes serves every camera.
#pragma once

#include "emaseg/emaseg.h"

#include <torch/types.h>

#include <map>
#include <utility>
#include <vector>

namespace emaseg::detail {

// The resize of frames of one size to one network size: index and weight tables made once.
class ExactResize {
 public:
  ExactResize(cv::Size from, cv::Size to);
  // `src` (CV_8UC3 of the `from` size) -> `dst` (CV_8UC3 of the `to` size, allocated if needed).
  void operator()(const cv::Mat& src, cv::Mat& dst) const;

 private:
  struct Axis {
    std::vector<int> i0, i1, w0, w1;
  };
  static Axis axis(int src, int dst, bool clamp_weights);
  void rows(const cv::Mat& src, cv::Mat& dst, int begin, int end) const;  // output rows [begin, end)
  cv::Size to_;
  Axis rows_, cols_;
};

// The network-size half of the frame labels (emaseg.frame_labels.network_cells): 1 x h x w, the
// label of each cell whose four source pixels agree on one sure label, else 255 (uint8, when
// !wide) or -1 (int64). `scores`: 1 x C x h x w, float32, bfloat16 or float16, any device.
torch::Tensor network_cells(const torch::Tensor& scores, bool wide);

// Labels at the frame size from one frame's network outputs, with the source tables of one
// (network size, frame size) pair made once.
class FrameLabels {
 public:
  FrameLabels(cv::Size network, cv::Size frame, bool align_corners);
  // `scores` 1 x C x h x w (float32, bfloat16 or float16, any device), `cells` 1 x h x w (uint8
  // or int64, the unsure cells marked 255 or -1) -> CV_8U (uint8 cells) or CV_32S labels.
  cv::Mat operator()(const torch::Tensor& scores, const torch::Tensor& cells) const;

 private:
  template <typename Score, typename Label>
  void fill(const torch::Tensor& scores, const torch::Tensor& cells, cv::Mat& out) const;
  cv::Size network_, frame_;
  std::vector<std::int64_t> y0_, y1_, x0_, x1_;
  std::vector<float> wy_, wx_;
};

// Softmax probabilities (num_classes CV_32F planes of `frame`'s size) of one frame's scores.
std::vector<cv::Mat> frame_probabilities(const torch::Tensor& scores, cv::Size frame, bool align_corners);

// Labels of a frame already at the network size: the argmax of its scores.
cv::Mat argmax_labels(const torch::Tensor& scores, bool wide);

}  // namespace emaseg::detail
