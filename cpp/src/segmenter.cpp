#include "emaseg/emaseg.h"

#include "metadata.h"
#include "model_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <thread>

namespace emaseg {
namespace {

std::string type_name(int type) {
  static const char* depths[] = {"8U", "8S", "16U", "16S", "32S", "32F", "64F", "16F"};
  return std::string("CV_") + depths[CV_MAT_DEPTH(type)] + "C" + std::to_string(CV_MAT_CN(type));
}

// "81.0 megapixels", or the exact count below 0.1 megapixels, where one decimal would print a
// small limit as 0.0.
std::string pixel_count(long long pixels) {
  if (pixels < 100000) return std::to_string(pixels) + " pixels";
  char text[40];
  std::snprintf(text, sizeof text, "%.1f megapixels", double(pixels) / 1e6);
  return text;
}

// The model contract's input: BGR uint8, at least 8x8 (smaller frames break the resize).
void check_frame(const cv::Mat& frame, long long max_pixels) {
  if (frame.empty())
    throw Error(Error::Kind::kArgument,
                "empty frame (a video that ended, or an image that failed to load?)");
  if (frame.type() != CV_8UC3)
    throw Error(Error::Kind::kArgument,
                "frames must be 8-bit BGR (CV_8UC3), got " + type_name(frame.type()) +
                    "; convert with cv::cvtColor (e.g. COLOR_GRAY2BGR, COLOR_BGRA2BGR) first");
  if (frame.dims != 2 || frame.rows < 8 || frame.cols < 8)
    throw Error(Error::Kind::kArgument, "frame is " + std::to_string(frame.cols) + "x" +
                                            std::to_string(frame.rows) +
                                            "; the model needs at least 8x8 pixels");
  const long long pixels = static_cast<long long>(frame.rows) * frame.cols;
  if (max_pixels > 0 && pixels > max_pixels)
    throw Error(Error::Kind::kArgument,
                "frame is " + std::to_string(frame.cols) + "x" + std::to_string(frame.rows) + " (" +
                    pixel_count(pixels) + "), more than the limit of " + pixel_count(max_pixels) +
                    " (raise it with Options::max_pixels / ema_seg --max-pixels)");
}

// Checked before anything is loaded, so a bad value is a clear error and not a crash.
const Options& checked(const Options& options) {
  if (options.threads < 0 || options.threads > max_threads())
    throw Error(Error::Kind::kArgument,
                "threads must lie in 0.." + std::to_string(max_threads()) + " (0 keeps LibTorch's "
                "default; at most 4 x the " + std::to_string(max_threads() / 4) +
                " hardware threads), got " + std::to_string(options.threads));
  if (options.max_pixels < 0)
    throw Error(Error::Kind::kArgument, "max_pixels must be >= 0 (0: no limit)");
  return options;
}

}  // namespace

cv::Size Metadata::network_size(cv::Size frame) const {
  const double h = frame.height, w = frame.width;
  double factor = 1.0;
  if (resize_type == "scale" && resize.size() == 2) {  // mmcv's keep-ratio rescale, as inference.py
    const double long_edge = std::max(resize[0], resize[1]), short_edge = std::min(resize[0], resize[1]);
    factor = std::min(long_edge / std::max(h, w), short_edge / std::min(h, w));
  } else if (resize_type == "size" && resize.size() == 2) {
    return {resize[1], resize[0]};
  } else if (resize_type == "short_side" && resize.size() == 1) {
    factor = double(resize[0]) / std::min(h, w);
  } else {
    return frame;
  }
  return {static_cast<int>(std::floor(w * factor + 0.5)), static_cast<int>(std::floor(h * factor + 0.5))};
}

bool Metadata::compiled_for(cv::Size frame) const {
  if (format != "emaseg.aoti") return true;
  return std::find(network_sizes.begin(), network_sizes.end(), network_size(frame)) != network_sizes.end();
}

bool Metadata::takes(cv::Size frame) const { return any_size || compiled_for(frame); }

int max_threads() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return 4 * static_cast<int>(hardware > 0 ? hardware : 1);
}

struct Segmenter::Impl {
  Impl(std::unique_ptr<detail::ModelBackend> model, const Options& opts, const std::string& source)
      : backend(std::move(model)),
        metadata(detail::parse_metadata(backend->metadata_json(), source)),
        options(opts) {}

  // Models with up to 256 classes get CV_8U labels even if they return int64.
  cv::Mat narrow(cv::Mat labels) const {
    if (labels.type() == CV_32S && metadata.num_classes <= 256) labels.convertTo(labels, CV_8U);
    return labels;
  }

  std::vector<cv::Mat> run(const std::vector<cv::Mat>& frames) const {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<cv::Mat> labels = backend->labels(frames);
    for (cv::Mat& map : labels) map = narrow(std::move(map));
    return labels;
  }

  std::unique_ptr<detail::ModelBackend> backend;
  Metadata metadata;
  Options options;
  // Serialises model calls: TorchScript modules and CUDA streams are not ours to share.
  mutable std::mutex mutex;
};

Segmenter::Segmenter(const std::string& model_path, const Options& options)
    : impl_(std::make_unique<Impl>(detail::load_model_file(model_path, checked(options)), options,
                                   "'" + model_path + "'")) {
  if (options.warmup_runs > 0) warmup(options.warmup_size, options.warmup_runs);
}

Segmenter::Segmenter(const void* data, std::size_t size, const Options& options)
    : impl_(std::make_unique<Impl>(detail::load_model_buffer(data, size, checked(options)), options,
                                   "in memory")) {
  if (options.warmup_runs > 0) warmup(options.warmup_size, options.warmup_runs);
}

Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;
Segmenter::~Segmenter() = default;

const Metadata& Segmenter::metadata() const { return impl_->metadata; }
const Options& Segmenter::options() const { return impl_->options; }
std::string Segmenter::device() const { return impl_->backend->device(); }

cv::Mat Segmenter::segment(const cv::Mat& bgr) const {
  check_frame(bgr, impl_->options.max_pixels);
  return std::move(impl_->run({bgr}).front());
}

std::vector<cv::Mat> Segmenter::segment_batch(const std::vector<cv::Mat>& frames) const {
  for (const cv::Mat& frame : frames) check_frame(frame, impl_->options.max_pixels);
  std::vector<cv::Mat> labels;
  labels.reserve(frames.size());
  // One model call per run of equal-size frames: the model stacks its input into one tensor.
  for (std::size_t begin = 0; begin < frames.size();) {
    std::size_t end = begin + 1;
    while (end < frames.size() && frames[end].size() == frames[begin].size()) ++end;
    const std::vector<cv::Mat> group(frames.begin() + begin, frames.begin() + end);
    for (cv::Mat& map : impl_->run(group)) labels.push_back(std::move(map));
    begin = end;
  }
  return labels;
}

std::vector<cv::Mat> Segmenter::probabilities(const cv::Mat& bgr) const {
  check_frame(bgr, impl_->options.max_pixels);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->backend->probabilities(bgr);
}

void Segmenter::warmup(cv::Size size, int runs) const {
  const cv::Mat black(std::max(size.height, 8), std::max(size.width, 8), CV_8UC3, cv::Scalar::all(0));
  for (int i = 0; i < runs; ++i) impl_->run({black});
}

cv::Mat Segmenter::colorize(const cv::Mat& labels) const {
  return emaseg::colorize(labels, impl_->metadata.palette);
}

cv::Mat Segmenter::overlay(const cv::Mat& bgr, const cv::Mat& labels, double alpha) const {
  return emaseg::overlay(bgr, labels, impl_->metadata.palette, alpha);
}

}  // namespace emaseg
