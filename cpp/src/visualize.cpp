// Palette colouring and blending; no model needed, so no lock.
#include "emaseg/emaseg.h"

#include <opencv2/core.hpp>

namespace emaseg {
namespace {

template <typename Label>
void paint(const cv::Mat& labels, const std::vector<cv::Vec3b>& lut, cv::Mat& out) {
  const auto classes = static_cast<long long>(lut.size());
  for (int y = 0; y < labels.rows; ++y) {
    const Label* in = labels.ptr<Label>(y);
    auto* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < labels.cols; ++x) {
      const auto label = static_cast<long long>(in[x]);
      dst[x] = (label >= 0 && label < classes) ? lut[label] : cv::Vec3b(0, 0, 0);
    }
  }
}

}  // namespace

cv::Mat colorize(const cv::Mat& labels, const std::vector<std::array<std::uint8_t, 3>>& palette) {
  if (labels.empty() || labels.channels() != 1 || labels.dims != 2)
    throw Error(Error::Kind::kArgument, "colorize needs a single-channel label map");
  std::vector<cv::Vec3b> lut;  // BGR, as OpenCV draws
  lut.reserve(palette.size());
  for (const auto& rgb : palette) lut.emplace_back(rgb[2], rgb[1], rgb[0]);
  cv::Mat out(labels.size(), CV_8UC3);
  switch (labels.depth()) {
    case CV_8U: paint<std::uint8_t>(labels, lut, out); break;
    case CV_16U: paint<std::uint16_t>(labels, lut, out); break;
    case CV_32S: paint<std::int32_t>(labels, lut, out); break;
    default:
      throw Error(Error::Kind::kArgument, "colorize needs CV_8U, CV_16U or CV_32S labels");
  }
  return out;
}

cv::Mat overlay(const cv::Mat& bgr, const cv::Mat& labels,
                const std::vector<std::array<std::uint8_t, 3>>& palette, double alpha) {
  if (bgr.type() != CV_8UC3)
    throw Error(Error::Kind::kArgument, "overlay needs an 8-bit BGR (CV_8UC3) frame");
  if (bgr.size() != labels.size())
    throw Error(Error::Kind::kArgument, "overlay: frame and labels differ in size");
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw Error(Error::Kind::kArgument, "overlay: alpha must lie in [0, 1]");
  cv::Mat out;
  cv::addWeighted(bgr, 1.0 - alpha, colorize(labels, palette), alpha, 0.0, out);
  return out;
}

}  // namespace emaseg
