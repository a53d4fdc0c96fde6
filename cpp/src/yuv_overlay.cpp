#include "yuv_overlay.h"

#include <algorithm>
#include <cmath>

namespace emaseg::detail {
namespace {

constexpr double kOne = 65536.0;  // 16-bit fixed point, as overlay() blends

// Limited-range YUV of an RGB colour for the luma weights kr, kb (ITU-R BT.601 / BT.709).
std::array<double, 3> to_yuv(const std::array<std::uint8_t, 3>& rgb, double kr, double kb) {
  const double r = rgb[0] / 255.0, g = rgb[1] / 255.0, b = rgb[2] / 255.0;
  const double luma = kr * r + (1.0 - kr - kb) * g + kb * b;
  return {16.0 + 219.0 * luma, 128.0 + 224.0 * (b - luma) / (2.0 * (1.0 - kb)),
          128.0 + 224.0 * (r - luma) / (2.0 * (1.0 - kr))};
}

std::uint8_t blend(std::uint32_t kept, std::uint32_t tint) {
  return static_cast<std::uint8_t>(std::min<std::uint32_t>(255, (kept + tint + 32768u) >> 16));
}

template <typename Label>
void blend_planes(const cv::Mat& in, const cv::Mat& labels, const std::vector<std::array<std::uint32_t, 3>>& tint,
                  const std::array<std::uint32_t, 256>& keep, cv::Mat& out) {
  const int w = labels.cols, h = labels.rows;
  const auto last = static_cast<long long>(tint.size()) - 1;  // the entry past the palette: black
  const auto index = [last](Label label) {
    const auto l = static_cast<long long>(label);
    return static_cast<std::size_t>(l >= 0 && l < last ? l : last);
  };
  const std::uint8_t* y_in = in.data;
  const std::uint8_t* u_in = y_in + std::size_t(w) * h;
  const std::uint8_t* v_in = u_in + std::size_t(w / 2) * (h / 2);
  std::uint8_t* y_out = out.data;
  std::uint8_t* u_out = y_out + std::size_t(w) * h;
  std::uint8_t* v_out = u_out + std::size_t(w / 2) * (h / 2);
  for (int row = 0; row < h; row += 2) {
    const Label* top = labels.ptr<Label>(row);
    const Label* bottom = labels.ptr<Label>(row + 1);
    const std::size_t y0 = std::size_t(row) * w, y1 = y0 + w, c0 = std::size_t(row / 2) * (w / 2);
    for (int x = 0; x < w; x += 2) {
      const auto& a = tint[index(top[x])];
      const auto& b = tint[index(top[x + 1])];
      const auto& c = tint[index(bottom[x])];
      const auto& d = tint[index(bottom[x + 1])];
      y_out[y0 + x] = blend(keep[y_in[y0 + x]], a[0]);
      y_out[y0 + x + 1] = blend(keep[y_in[y0 + x + 1]], b[0]);
      y_out[y1 + x] = blend(keep[y_in[y1 + x]], c[0]);
      y_out[y1 + x + 1] = blend(keep[y_in[y1 + x + 1]], d[0]);
      const std::size_t chroma = c0 + std::size_t(x / 2);
      u_out[chroma] = blend(keep[u_in[chroma]], (a[1] + b[1] + c[1] + d[1] + 2) / 4);
      v_out[chroma] = blend(keep[v_in[chroma]], (a[2] + b[2] + c[2] + d[2] + 2) / 4);
    }
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
  std::array<std::uint32_t, 256> keep{};
  for (int v = 0; v < 256; ++v) keep[v] = static_cast<std::uint32_t>(std::lround(v * (1.0 - alpha) * kOne));
  std::vector<std::array<std::uint32_t, 3>> tint;
  tint.reserve(palette.size() + 1);
  for (std::size_t i = 0; i <= palette.size(); ++i) {
    const auto yuv = to_yuv(i < palette.size() ? palette[i] : std::array<std::uint8_t, 3>{0, 0, 0}, kr, kb);
    tint.push_back({static_cast<std::uint32_t>(std::lround(yuv[0] * alpha * kOne)),
                    static_cast<std::uint32_t>(std::lround(yuv[1] * alpha * kOne)),
                    static_cast<std::uint32_t>(std::lround(yuv[2] * alpha * kOne))});
  }
  cv::Mat out(i420.size(), CV_8UC1);
  switch (labels.depth()) {
    case CV_8U: blend_planes<std::uint8_t>(i420, labels, tint, keep, out); break;
    case CV_16U: blend_planes<std::uint16_t>(i420, labels, tint, keep, out); break;
    case CV_32S: blend_planes<std::int32_t>(i420, labels, tint, keep, out); break;
    default: throw Error(Error::Kind::kArgument, "overlay needs CV_8U, CV_16U or CV_32S labels");
  }
  return out;
}

}  // namespace emaseg::detail
