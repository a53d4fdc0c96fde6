// Built with -ffp-contract=off (cpp/CMakeLists.txt): every float operation here must round as
// the eager torch ops of python/emaseg/{resize,frame_labels}.py do, never fused into an FMA.
#include "frame_work.h"

#include "torch_util.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace emaseg::detail {
namespace {

// argmax with torch's rules: the first index of the largest value, a NaN counting as the largest.
template <typename T>
int argmax_of(const std::vector<T>& values) {
  int best = 0;
  for (int k = 1; k < static_cast<int>(values.size()); ++k) {
    const float current = static_cast<float>(values[best]);
    if (std::isnan(current)) break;
    const float v = static_cast<float>(values[k]);
    if (std::isnan(v) || v > current) best = k;
  }
  return best;
}

// Calls `f` with a value of the scores' element type: float32, bfloat16 or float16, the dtypes a
// package computes in; any other breaks the package's contract.
template <typename F>
decltype(auto) by_score_type(torch::ScalarType type, F&& f) {
  switch (type) {
    case torch::kFloat: return f(float());
    case torch::kBFloat16: return f(c10::BFloat16());
    case torch::kHalf: return f(c10::Half());
    default:
      throw Error(Error::Kind::kModel, "the .pt2 network returned scores of an unexpected dtype; "
                                       "export it again with python python/export.py");
  }
}

}  // namespace

// --- the exact uint8 resize (python/emaseg/resize.py; the arithmetic is explained there) --------

ExactResize::Axis ExactResize::axis(int src, int dst, bool clamp_weights) {
  Axis a;
  a.i0.resize(dst), a.i1.resize(dst), a.w0.resize(dst), a.w1.resize(dst);
  const double scale = 1.0 / (static_cast<double>(dst) / static_cast<double>(src));
  for (int d = 0; d < dst; ++d) {
    // In double, then float32, as OpenCV (and the torch version) compute the source position.
    const float pos = static_cast<float>((static_cast<double>(d) + 0.5) * scale - 0.5);
    const float start = std::floor(pos);
    float frac = pos - start;
    long index = static_cast<long>(start);
    if (clamp_weights && (index < 0 || index >= src - 1)) {  // OpenCV's column rule
      frac = 0.0f;
      if (index < 0) index = 0;
    }
    a.w0[d] = static_cast<int>(std::nearbyint((1.0f - frac) * 2048.0f));  // half to even
    a.w1[d] = static_cast<int>(std::nearbyint(frac * 2048.0f));
    a.i0[d] = static_cast<int>(std::clamp<long>(index, 0, src - 1));
    a.i1[d] = static_cast<int>(std::clamp<long>(index + 1, 0, src - 1));
  }
  return a;
}

ExactResize::ExactResize(cv::Size from, cv::Size to)
    : to_(to), rows_(axis(from.height, to.height, false)), cols_(axis(from.width, to.width, true)) {}

void ExactResize::operator()(const cv::Mat& src, cv::Mat& dst) const {
  dst.create(to_, CV_8UC3);
  at::parallel_for(0, to_.height, 16, [&](std::int64_t begin, std::int64_t end) {
    rows(src, dst, static_cast<int>(begin), static_cast<int>(end));
  });
}

void ExactResize::rows(const cv::Mat& src, cv::Mat& dst, int begin, int end) const {
  const int width = to_.width;
  std::vector<int> upper(std::size_t(width) * 3), lower(std::size_t(width) * 3);
  const auto horizontal = [&](int row, std::vector<int>& out) {
    const std::uint8_t* line = src.ptr<std::uint8_t>(row);
    for (int x = 0; x < width; ++x) {
      const std::uint8_t* left = line + 3 * cols_.i0[x];
      const std::uint8_t* right = line + 3 * cols_.i1[x];
      for (int c = 0; c < 3; ++c) out[3 * x + c] = left[c] * cols_.w0[x] + right[c] * cols_.w1[x];
    }
  };
  for (int y = begin; y < end; ++y) {
    horizontal(rows_.i0[y], upper);
    horizontal(rows_.i1[y], lower);
    const int b0 = rows_.w0[y], b1 = rows_.w1[y];
    std::uint8_t* out = dst.ptr<std::uint8_t>(y);
    for (int i = 0; i < 3 * width; ++i) {
      // OpenCV's vertical SIMD kernel: 16-bit high products of (h >> 4) and the row weight.
      const int total = (((upper[i] >> 4) * b0) >> 16) + (((lower[i] >> 4) * b1) >> 16);
      out[i] = static_cast<std::uint8_t>(std::min((total + 2) >> 2, 255));
    }
  }
}

// --- the per-cell labels at the network size (python/emaseg/frame_labels.py: network_cells) -------

namespace {

// The top-2 gap share of the largest |score| above which a label is sure (frame_labels.margin).
template <typename T>
float margin() {
  return std::is_same_v<T, float> ? static_cast<float>(1e-4) : 0.03125f;
}

// top2 over the classes of (1, C, h, w) scores: the argmax (first index on ties) and the gap
// between the two largest, a running maximum over the class planes in the scores' dtype, as
// frame_labels.top2 computes it.
template <typename T, typename Label>
void top2(const T* s, int classes, std::int64_t plane, std::vector<Label>& labels, std::vector<T>& gap) {
  labels.assign(plane, 0);
  gap.resize(plane);
  // Pixel ranges in parallel, each plane by plane within its range, so that the loops stream.
  at::parallel_for(0, plane, 4096, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t n = end - begin;
    std::vector<float> best(n), second(n, -std::numeric_limits<float>::infinity());
    for (std::int64_t i = 0; i < n; ++i) best[i] = static_cast<float>(s[begin + i]);
    for (int k = 1; k < classes; ++k) {
      const T* row = s + k * plane + begin;
      Label* label = labels.data() + begin;
      for (std::int64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(row[i]);
        const bool above = v > best[i];  // strict: an equal later score keeps the first index
        // torch.maximum: a NaN in either is the result.
        const float larger = std::isnan(second[i]) || std::isnan(v) ? std::numeric_limits<float>::quiet_NaN()
                                                                    : (v > second[i] ? v : second[i]);
        second[i] = above ? best[i] : larger;
        best[i] = above ? v : best[i];
        label[i] = above ? static_cast<Label>(k) : label[i];
      }
    }
    for (std::int64_t i = 0; i < n; ++i) gap[begin + i] = T(best[i] - second[i]);  // rounded to the dtype
  });
}

template <typename T, typename Label>
void cells_of(const torch::Tensor& scores, torch::Tensor& out) {
  const int classes = static_cast<int>(scores.size(1)), h = static_cast<int>(scores.size(2)),
            w = static_cast<int>(scores.size(3));
  const std::int64_t plane = std::int64_t(h) * w;
  const T* s = scores.data_ptr<T>();
  std::vector<Label> labels;
  std::vector<T> gap;
  top2(s, classes, plane, labels, gap);
  // The largest |score|; NaN or inf anywhere makes the threshold NaN or inf: nothing is sure.
  float largest = 0.0f;
  bool nan = false;
  for (std::int64_t i = 0; i < classes * plane; ++i) {
    const float magnitude = std::fabs(static_cast<float>(s[i]));
    nan |= std::isnan(magnitude);
    largest = magnitude > largest ? magnitude : largest;
  }
  if (nan) largest = std::numeric_limits<float>::quiet_NaN();
  const float threshold = static_cast<float>(T(static_cast<float>(T(largest)) * margin<T>()));
  std::vector<std::uint8_t> sure(plane), rows(plane);
  for (std::int64_t i = 0; i < plane; ++i) sure[i] = static_cast<float>(gap[i]) > threshold;
  // A pixel and its right neighbour (itself at the border) agree and are both sure; then the same
  // of that result with the pixel below.
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::int64_t i = std::int64_t(y) * w + x, j = std::int64_t(y) * w + std::min(x + 1, w - 1);
      rows[i] = labels[i] == labels[j] && sure[i] && sure[j];
    }
  constexpr Label kUnknown = static_cast<Label>(sizeof(Label) == 1 ? 255 : -1);
  Label* cells = out.data_ptr<Label>();
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::int64_t i = std::int64_t(y) * w + x, j = std::int64_t(std::min(y + 1, h - 1)) * w + x;
      cells[i] = labels[i] == labels[j] && rows[i] && rows[j] ? labels[i] : kUnknown;
    }
}

}  // namespace

torch::Tensor network_cells(const torch::Tensor& scores, bool wide) {
  const torch::Tensor s = scores.to(torch::kCPU).contiguous();
  torch::Tensor out = torch::empty({1, s.size(2), s.size(3)}, wide ? torch::kLong : torch::kUInt8);
  by_score_type(s.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    if (wide)
      cells_of<T, std::int64_t>(s, out);
    else
      cells_of<T, std::uint8_t>(s, out);
  });
  return out;
}

// --- labels at the frame size (python/emaseg/frame_labels.py: labels_from_cells) ---------------

FrameLabels::FrameLabels(cv::Size network, cv::Size frame, bool align_corners)
    : network_(network), frame_(frame) {
  // The source tables with the same ATen ops as source_index() in Python, so that they round alike.
  const auto tables = [align_corners](int in_size, int out_size, std::vector<std::int64_t>& i0,
                                      std::vector<std::int64_t>& i1, std::vector<float>& weight) {
    const torch::Tensor out = torch::arange(out_size, torch::kFloat);
    torch::Tensor pos;
    if (align_corners) {
      const double scale = out_size > 1 ? double(in_size - 1) / double(out_size - 1) : 0.0;
      pos = out * scale;
    } else {
      pos = ((out + 0.5) * (double(in_size) / double(out_size)) - 0.5).clamp_min(0.0);
    }
    const torch::Tensor first = pos.floor().to(torch::kLong).clamp_max(in_size - 1);
    const torch::Tensor w = (pos - first.to(torch::kFloat)).clamp(0.0, 1.0).contiguous();
    const torch::Tensor second = (first + 1).clamp_max(in_size - 1);
    i0.assign(first.data_ptr<std::int64_t>(), first.data_ptr<std::int64_t>() + out_size);
    i1.assign(second.data_ptr<std::int64_t>(), second.data_ptr<std::int64_t>() + out_size);
    weight.assign(w.data_ptr<float>(), w.data_ptr<float>() + out_size);
  };
  tables(network.height, frame.height, y0_, y1_, wy_);
  tables(network.width, frame.width, x0_, x1_, wx_);
}

cv::Mat FrameLabels::operator()(const torch::Tensor& scores, const torch::Tensor& cells) const {
  const torch::Tensor s = scores.to(torch::kCPU).contiguous();
  const torch::Tensor c = cells.to(torch::kCPU).contiguous();
  const bool wide = c.scalar_type() == torch::kLong;
  cv::Mat out(frame_, wide ? CV_32S : CV_8U);
  by_score_type(s.scalar_type(), [&](auto tag) {
    using Score = decltype(tag);
    if (wide)
      fill<Score, std::int32_t>(s, c, out);
    else
      fill<Score, std::uint8_t>(s, c, out);
  });
  return out;
}

template <typename Score, typename Label>
void FrameLabels::fill(const torch::Tensor& scores, const torch::Tensor& cells, cv::Mat& out) const {
  const int h = network_.height, w = network_.width, width = frame_.width;
  const std::int64_t plane = std::int64_t(h) * w;
  const int classes = static_cast<int>(scores.size(1));
  const Score* base = scores.data_ptr<Score>();
  constexpr Label kUnknown = static_cast<Label>(sizeof(Label) == 1 ? 255 : -1);
  // Each source row's cells spread over the frame's columns once; every frame row copies one.
  std::vector<Label> columns(std::size_t(h) * width);
  const auto* decided = cells.data_ptr<std::conditional_t<sizeof(Label) == 1, std::uint8_t, std::int64_t>>();
  for (int r = 0; r < h; ++r)
    for (int x = 0; x < width; ++x)
      columns[std::size_t(r) * width + x] = static_cast<Label>(decided[r * w + x0_[x]]);
  // Frame rows in parallel (the intra-op threads would otherwise wait): each is independent.
  at::parallel_for(0, frame_.height, 16, [&](std::int64_t begin, std::int64_t end) {
    // The four source score vectors of the last undecided cell: neighbouring frame pixels share it.
    std::vector<float> corners(std::size_t(4) * classes);
    std::vector<float> values(static_cast<std::size_t>(classes));
    std::int64_t cached = -1;
    for (std::int64_t y = begin; y < end; ++y) {
      Label* row = out.ptr<Label>(static_cast<int>(y));
      std::memcpy(row, columns.data() + std::size_t(y0_[y]) * width, sizeof(Label) * width);
      const float ly = wy_[y];
      for (int x = 0; x < width; ++x) {
        if (row[x] != kUnknown) continue;
        const std::int64_t corner[4] = {y0_[y] * w + x0_[x], y0_[y] * w + x1_[x], y1_[y] * w + x0_[x],
                                        y1_[y] * w + x1_[x]};
        const std::int64_t key = corner[0] * plane + corner[3];
        if (key != cached) {
          for (int c = 0; c < 4; ++c)
            for (int k = 0; k < classes; ++k) corners[c * classes + k] = static_cast<float>(base[k * plane + corner[c]]);
          cached = key;
        }
        // The bilinear formula in float32 as the dense kernel computes it, rounded to the scores'
        // dtype at the end, then argmax.
        const float lx = wx_[x];
        for (int k = 0; k < classes; ++k) {
          const float upper = corners[k] * (1.0f - lx) + corners[classes + k] * lx;
          const float lower = corners[2 * classes + k] * (1.0f - lx) + corners[3 * classes + k] * lx;
          values[k] = static_cast<float>(static_cast<Score>(upper * (1.0f - ly) + lower * ly));
        }
        row[x] = static_cast<Label>(argmax_of(values));
      }
    }
  });
}

std::vector<cv::Mat> frame_probabilities(const torch::Tensor& scores, cv::Size frame, bool align_corners) {
  torch::Tensor resized = scores;
  if (scores.size(2) != frame.height || scores.size(3) != frame.width)
    resized = at::upsample_bilinear2d(scores, {frame.height, frame.width}, align_corners, c10::nullopt,
                                      c10::nullopt);
  return tensor_to_planes(resized.softmax(1), frame.height, frame.width, "the .pt2 network's probabilities");
}

namespace {

// argmax over the classes (first index on ties) of (1, C, h, w) scores; false if a score is NaN
// (argmax places a NaN, which this running maximum does not).
template <typename T, typename Label>
bool argmax_of_scores(const torch::Tensor& scores, cv::Mat& out) {
  const int classes = static_cast<int>(scores.size(1));
  const std::int64_t plane = scores.size(2) * scores.size(3);
  const T* s = scores.data_ptr<T>();
  auto* labels = reinterpret_cast<Label*>(out.data);
  std::atomic<bool> nan{false};
  at::parallel_for(0, plane, 4096, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t n = end - begin;
    std::vector<float> best(n);
    bool any_nan = false;
    for (std::int64_t i = 0; i < n; ++i) {
      best[i] = static_cast<float>(s[begin + i]);
      any_nan |= std::isnan(best[i]);
      labels[begin + i] = 0;
    }
    for (int k = 1; k < classes; ++k) {
      const T* row = s + k * plane + begin;
      Label* label = labels + begin;
      for (std::int64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(row[i]);
        any_nan |= std::isnan(v);
        const bool above = v > best[i];
        best[i] = above ? v : best[i];
        label[i] = above ? static_cast<Label>(k) : label[i];
      }
    }
    if (any_nan) nan = true;
  });
  return !nan;
}

}  // namespace

cv::Mat argmax_labels(const torch::Tensor& scores, bool wide) {
  const torch::Tensor s = scores.to(torch::kCPU).contiguous();
  cv::Mat out(static_cast<int>(s.size(2)), static_cast<int>(s.size(3)), wide ? CV_32S : CV_8U);
  const bool done = by_score_type(s.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    return wide ? argmax_of_scores<T, std::int32_t>(s, out) : argmax_of_scores<T, std::uint8_t>(s, out);
  });
  if (done) return out;
  // A NaN score: ATen's argmax places it as torch does.
  return tensor_to_labels(s.argmax(1).to(wide ? torch::kLong : torch::kUInt8), 1, out.rows, out.cols,
                          "the .pt2 network's argmax")[0];
}

}  // namespace emaseg::detail
