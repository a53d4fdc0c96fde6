#include "yuv_overlay.h"

#include <algorithm>
#include <cmath>

namespace emaseg::detail {
namespace {

constexpr double kOne = 256.0;  // 8.8 fixed point

// Limited-range YUV of an RGB colour for the luma weights kr, kb (ITU-R BT.601 / BT.709).
std::array<double, 3> to_yuv(const std::array<std::uint8_t, 3>& rgb, double kr, double kb) {
  const double r = rgb[0] / 255.0, g = rgb[1] / 255.0, b = rgb[2] / 255.0;
  const double luma = kr * r + (1.0 - kr - kb) * g + kb * b;
  return {16.0 + 219.0 * luma, 128.0 + 224.0 * (b - luma) / (2.0 * (1.0 - kb)),
          128.0 + 224.0 * (r - luma) / (2.0 * (1.0 - kr))};
}

// out = in * (1 - alpha) + tint in 8.8 fixed point: 16-bit lanes, which the compiler vectorises
// for any x86-64 (SSE2); the table lookups by label (gathers) stay in the loop before it.
// keep + alpha * 256 == 256, so the sum stays below 2^16.
void blend_row(const std::uint8_t* in, const std::uint16_t* tint, std::uint16_t keep, int n, std::uint8_t* out) {
  for (int x = 0; x < n; ++x)
    out[x] = static_cast<std::uint8_t>(std::uint16_t(in[x] * keep + tint[x] + 128u) >> 8);
}

using Tint = std::array<std::uint16_t, 3>;  // alpha * a colour's Y, U, V in 8.8 fixed point

// `tint_of(label)`: the label's Tint.
template <typename Label, typename TintOf>
void blend_planes(const cv::Mat& in, const cv::Mat& labels, const TintOf& tint_of, std::uint16_t keep, cv::Mat& out) {
  const int w = labels.cols, h = labels.rows;
  const std::uint8_t* y_in = in.data;
  const std::uint8_t* u_in = y_in + std::size_t(w) * h;
  const std::uint8_t* v_in = u_in + std::size_t(w / 2) * (h / 2);
  std::uint8_t* y_out = out.data;
  std::uint8_t* u_out = y_out + std::size_t(w) * h;
  std::uint8_t* v_out = u_out + std::size_t(w / 2) * (h / 2);
  std::vector<std::uint16_t> luma(std::size_t(w) * 2), u_tint(std::size_t(w / 2)), v_tint(std::size_t(w / 2));
  for (int row = 0; row < h; row += 2) {
    const Label* top = labels.ptr<Label>(row);
    const Label* bottom = labels.ptr<Label>(row + 1);
    for (int x = 0; x < w; x += 2) {
      const Tint& a = tint_of(top[x]);
      const Tint& b = tint_of(top[x + 1]);
      const Tint& c = tint_of(bottom[x]);
      const Tint& d = tint_of(bottom[x + 1]);
      luma[x] = a[0];
      luma[x + 1] = b[0];
      luma[w + x] = c[0];
      luma[w + x + 1] = d[0];
      // The block's chroma: its labels' mean.
      u_tint[x / 2] = static_cast<std::uint16_t>((a[1] + b[1] + c[1] + d[1] + 2) / 4);
      v_tint[x / 2] = static_cast<std::uint16_t>((a[2] + b[2] + c[2] + d[2] + 2) / 4);
    }
    const std::size_t y0 = std::size_t(row) * w, c0 = std::size_t(row / 2) * (w / 2);
    blend_row(y_in + y0, luma.data(), keep, 2 * w, y_out + y0);  // both rows: contiguous
    blend_row(u_in + c0, u_tint.data(), keep, w / 2, u_out + c0);
    blend_row(v_in + c0, v_tint.data(), keep, w / 2, v_out + c0);
  }
}

}  // namespace

cv::Mat overlay_i420(const cv::Mat& i420, const cv::Mat& labels,
                     const std::vector<std::array<std::uint8_t, 3>>& palette, double alpha,
                     const VideoColour& colour) {
  const int w = labels.cols, h = labels.rows;
  if (i420.type() != CV_8UC1 || !i420.isContinuous() || i420.cols != w || i420.rows != h * 3 / 2 ||
      w % 2 != 0 || h % 2 != 0)
    throw Error(Error::Kind::kArgument, "overlay_i420: I420 planes of the labels' even size needed");
  if (labels.channels() != 1 || labels.dims != 2)
    throw Error(Error::Kind::kArgument, "overlay needs a single-channel label map");
  if (!(alpha >= 0.0 && alpha <= 1.0)) throw Error(Error::Kind::kArgument, "overlay: alpha must lie in [0, 1]");
  const bool bt709 = colour.matrix == 1;
  const double kr = bt709 ? 0.2126 : 0.299, kb = bt709 ? 0.0722 : 0.114;
  const auto keep = static_cast<std::uint16_t>(std::lround((1.0 - alpha) * kOne));
  // Labels past the palette are black. 8-bit labels get a table of all 256 values: no bounds test.
  std::vector<Tint> tint(std::max<std::size_t>(palette.size() + 1, 256));
  for (std::size_t i = 0; i < tint.size(); ++i) {
    const auto yuv = to_yuv(i < palette.size() ? palette[i] : std::array<std::uint8_t, 3>{0, 0, 0}, kr, kb);
    // (256 - keep) * colour: keep * in + tint never exceeds 255 * 256.
    const auto part = [&](double v) { return static_cast<std::uint16_t>(std::lround(v * (kOne - keep))); };
    tint[i] = {part(yuv[0]), part(yuv[1]), part(yuv[2])};
  }
  const auto bounded = [&tint, classes = static_cast<long long>(palette.size())](auto label) -> const Tint& {
    const auto l = static_cast<long long>(label);
    return tint[static_cast<std::size_t>(l >= 0 && l < classes ? l : classes)];
  };
  cv::Mat out(i420.size(), CV_8UC1);
  switch (labels.depth()) {
    case CV_8U:
      blend_planes<std::uint8_t>(i420, labels, [&tint](std::uint8_t l) -> const Tint& { return tint[l]; }, keep, out);
      break;
    case CV_16U: blend_planes<std::uint16_t>(i420, labels, bounded, keep, out); break;
    case CV_32S: blend_planes<std::int32_t>(i420, labels, bounded, keep, out); break;
    default: throw Error(Error::Kind::kArgument, "overlay needs CV_8U, CV_16U or CV_32S labels");
  }
  return out;
}

}  // namespace emaseg::detail
