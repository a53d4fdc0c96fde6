#include "torch_util.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>

namespace emaseg::detail {
namespace {

std::string describe(const torch::Tensor& t) {
  std::string shape;
  for (const auto size : t.sizes()) shape += (shape.empty() ? "" : "x") + std::to_string(size);
  return std::string(c10::toString(t.scalar_type())) + " " + shape;
}

}  // namespace

torch::Device parse_device(const std::string& text) {
  std::optional<torch::Device> device;
  try {
    device = torch::Device(text);
  } catch (const c10::Error&) {
  }
  if (!device || !(device->is_cpu() || device->is_cuda()))
    throw Error(Error::Kind::kArgument, "unknown device '" + text + "': use cpu, cuda or cuda:N");
  if (device->is_cpu()) return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available())
    throw Error(Error::Kind::kDevice,
                "device '" + text + "' requested but CUDA is not available (this LibTorch is "
                "CPU-only or no GPU is visible); use device cpu");
  // A bare "cuda" means GPU 0, not the calling thread's current GPU: the pipeline runs the
  // model on its own thread, whose current device may differ from the constructing thread's.
  const int index = device->has_index() ? device->index() : 0;
  const int count = torch::cuda::device_count();
  if (index >= count)
    throw Error(Error::Kind::kDevice, "device '" + text + "' requested but only " +
                                          std::to_string(count) + " CUDA device(s) are visible");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void configure_threads(int threads) {
  if (threads <= 0) return;  // 0 keeps LibTorch's default; Segmenter checked the range
  at::set_num_threads(threads);  // applies to every thread: each picks it up on first use
  // The inter-op pool can be sized once, before it starts; after that LibTorch throws, and
  // keeping the existing pool is the only sensible reaction.
  static std::once_flag once;
  std::call_once(once, [threads] {
    try {
      at::set_num_interop_threads(threads);
    } catch (const c10::Error&) {
    }
  });
}

std::string first_line(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = torch_error ? torch_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

// TorchScript wraps what a model raised as "The following operation failed in the TorchScript
// interpreter." plus a TorchScript traceback, whose last line is the model's own exception
// ("builtins.ValueError: network input 1x1 is smaller than 8x8").
std::string model_message(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = torch_error ? torch_error->what_without_backtrace() : e.what();
  if (text.rfind("The following operation failed in the TorchScript interpreter", 0) != 0)
    return first_line(e);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::string last = text.substr(text.find_last_of('\n') + 1);
  if (last.rfind("builtins.", 0) == 0) last = last.substr(9);
  return last;
}

Error model_failure(const std::vector<cv::Mat>& frames, const torch::Device& device,
                    const std::exception& e) {
  return Error(Error::Kind::kRuntime,
               "the model failed on " + std::to_string(frames.size()) + " frame(s) of " +
                   std::to_string(frames[0].cols) + "x" + std::to_string(frames[0].rows) + " on " +
                   device.str() + ": " + model_message(e));
}

torch::Tensor frames_to_tensor(const std::vector<cv::Mat>& frames, const torch::Device& device) {
  const int n = static_cast<int>(frames.size());
  const int h = frames[0].rows;
  const int w = frames[0].cols;
  if (device.is_cpu() && n == 1 && frames[0].isContinuous()) {
    // The model only reads its input, so on the CPU the tensor can alias the frame.
    return torch::from_blob(const_cast<uchar*>(frames[0].data), {1, h, w, 3}, torch::kUInt8);
  }
  auto options = torch::TensorOptions().dtype(torch::kUInt8);
  // Pinned host memory lets the copy to the GPU run asynchronously and at full speed.
  if (device.is_cuda()) options = options.pinned_memory(true);
  torch::Tensor host = torch::empty({n, h, w, 3}, options);
  auto* base = host.data_ptr<std::uint8_t>();
  for (int i = 0; i < n; ++i) {
    cv::Mat view(h, w, CV_8UC3, base + std::size_t(i) * h * w * 3);
    frames[i].copyTo(view);  // also packs frames whose rows are not contiguous
  }
  // Ordered before the model on the same stream; the caching host allocator keeps the
  // pinned block alive until the copy has finished.
  return device.is_cuda() ? host.to(device, /*non_blocking=*/true) : host;
}

std::vector<cv::Mat> tensor_to_labels(const torch::Tensor& out, int n, int h, int w,
                                      const std::string& what) {
  if (out.dim() != 3 || out.size(0) != n || out.size(1) != h || out.size(2) != w ||
      (out.scalar_type() != torch::kUInt8 && out.scalar_type() != torch::kLong))
    throw Error(Error::Kind::kModel, what + " returned a " + describe(out) + " tensor for " +
                                         std::to_string(n) + " frame(s) of " + std::to_string(h) +
                                         "x" + std::to_string(w) + "; the contract is uint8 or "
                                         "int64 N x H x W labels (re-export the model)");
  const bool wide = out.scalar_type() == torch::kLong;
  std::vector<cv::Mat> maps;
  maps.reserve(std::size_t(n));
  for (int i = 0; i < n; ++i) {
    cv::Mat map(h, w, wide ? CV_32S : CV_8U);
    // Copy straight into the Mat (from the GPU, or converting int64 -> int32) in one go.
    torch::from_blob(map.data, {h, w}, wide ? torch::kInt : torch::kUInt8).copy_(out[i]);
    maps.push_back(std::move(map));
  }
  return maps;
}

std::vector<cv::Mat> tensor_to_planes(const torch::Tensor& out, int h, int w,
                                      const std::string& what) {
  if (out.dim() != 4 || out.size(0) != 1 || out.size(2) != h || out.size(3) != w ||
      !out.is_floating_point())
    throw Error(Error::Kind::kModel, what + " returned a " + describe(out) +
                                         " tensor; the contract is float 1 x C x H x W");
  const int classes = static_cast<int>(out.size(1));
  cv::Mat all(classes * h, w, CV_32F);
  torch::from_blob(all.data, {classes, h, w}, torch::kFloat).copy_(out[0]);
  std::vector<cv::Mat> planes;
  for (int c = 0; c < classes; ++c) planes.push_back(all.rowRange(c * h, (c + 1) * h));
  return planes;
}

size_t MemoryReadAdapter::read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const {
  if (pos >= size_) return 0;
  n = std::min<size_t>(n, size_ - pos);
  std::memcpy(buf, data_ + pos, n);
  return n;
}

}  // namespace emaseg::detail
