// ModelBackend for TorchScript archives (torch.jit.save), the format python/export.py writes.
// The only translation unit that includes LibTorch headers, which keeps rebuilds short.
#include "model_backend.h"

#include <ATen/Parallel.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/passes/frozen_graph_optimizations.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>

namespace emaseg::detail {
namespace {

constexpr const char* kMetadataFile = "metadata.json";

// LibTorch messages end in C++ stack traces; users need the first line.
std::string first_line(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = torch_error ? torch_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

// What a model raised: TorchScript wraps it as "The following operation failed in the
// TorchScript interpreter." plus a TorchScript traceback, whose last line is the model's own
// exception ("builtins.ValueError: network input 1x1 is smaller than 8x8").
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

// Reads an archive straight from the caller's memory: loading an embedded model copies
// nothing but the tensors' bytes.
class MemoryReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  MemoryReadAdapter(const void* data, std::size_t size)
      : data_(static_cast<const unsigned char*>(data)), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size_) return 0;
    n = std::min<size_t>(n, size_ - pos);
    std::memcpy(buf, data_ + pos, n);
    return n;
  }

 private:
  const unsigned char* data_;
  std::size_t size_;
};

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
  if (threads < 0)
    throw Error(Error::Kind::kArgument, "threads must be >= 0 (0 keeps LibTorch's default)");
  if (threads == 0) return;
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

class TorchScriptBackend final : public ModelBackend {
 public:
  TorchScriptBackend(torch::jit::Module module, std::string metadata, torch::Device device)
      : module_(std::move(module)), metadata_(std::move(metadata)), device_(device) {}

  const std::string& metadata_json() const override { return metadata_; }
  std::string device() const override { return device_.str(); }

  std::vector<cv::Mat> labels(const std::vector<cv::Mat>& frames) override {
    const int n = static_cast<int>(frames.size());
    const int h = frames[0].rows;
    const int w = frames[0].cols;
    c10::InferenceMode inference;
    const torch::Tensor out = run(module_.get_method("forward"), frames);
    if (out.dim() != 3 || out.size(0) != n || out.size(1) != h || out.size(2) != w ||
        (out.scalar_type() != torch::kUInt8 && out.scalar_type() != torch::kLong))
      throw Error(Error::Kind::kModel, "forward() returned a " + describe(out) + " tensor for " +
                                           std::to_string(n) + " frame(s) of " + std::to_string(h) +
                                           "x" + std::to_string(w) + "; the contract is uint8 or "
                                           "int64 N x H x W labels (re-export the model)");
    const bool wide = out.scalar_type() == torch::kLong;
    std::vector<cv::Mat> maps;
    maps.reserve(frames.size());
    for (int i = 0; i < n; ++i) {
      cv::Mat map(h, w, wide ? CV_32S : CV_8U);
      // Copy straight into the Mat (from the GPU, or converting int64 -> int32) in one go.
      torch::from_blob(map.data, {h, w}, wide ? torch::kInt : torch::kUInt8).copy_(out[i]);
      maps.push_back(std::move(map));
    }
    return maps;
  }

  std::vector<cv::Mat> probabilities(const cv::Mat& frame) override {
    const auto method = module_.find_method("probabilities");
    if (!method)
      throw Error(Error::Kind::kModel, "the model has no probabilities() method; re-export it "
                                       "with python python/export.py");
    c10::InferenceMode inference;
    const torch::Tensor out = run(*method, {frame});
    if (out.dim() != 4 || out.size(0) != 1 || out.size(2) != frame.rows ||
        out.size(3) != frame.cols || !out.is_floating_point())
      throw Error(Error::Kind::kModel, "probabilities() returned a " + describe(out) +
                                           " tensor; the contract is float 1 x C x H x W");
    const int classes = static_cast<int>(out.size(1));
    cv::Mat all(classes * frame.rows, frame.cols, CV_32F);
    torch::from_blob(all.data, {classes, frame.rows, frame.cols}, torch::kFloat).copy_(out[0]);
    std::vector<cv::Mat> planes;
    for (int c = 0; c < classes; ++c)
      planes.push_back(all.rowRange(c * frame.rows, (c + 1) * frame.rows));
    return planes;
  }

 private:
  static std::string describe(const torch::Tensor& t) {
    std::string shape;
    for (const auto size : t.sizes()) shape += (shape.empty() ? "" : "x") + std::to_string(size);
    return std::string(c10::toString(t.scalar_type())) + " " + shape;
  }

  torch::Tensor to_input(const std::vector<cv::Mat>& frames) const {
    const int n = static_cast<int>(frames.size());
    const int h = frames[0].rows;
    const int w = frames[0].cols;
    if (device_.is_cpu() && n == 1 && frames[0].isContinuous()) {
      // The model only reads its input, so on the CPU the tensor can alias the frame.
      return torch::from_blob(const_cast<uchar*>(frames[0].data), {1, h, w, 3}, torch::kUInt8);
    }
    auto options = torch::TensorOptions().dtype(torch::kUInt8);
    // Pinned host memory lets the copy to the GPU run asynchronously and at full speed.
    if (device_.is_cuda()) options = options.pinned_memory(true);
    torch::Tensor host = torch::empty({n, h, w, 3}, options);
    auto* base = host.data_ptr<std::uint8_t>();
    for (int i = 0; i < n; ++i) {
      cv::Mat view(h, w, CV_8UC3, base + std::size_t(i) * h * w * 3);
      frames[i].copyTo(view);  // also packs frames whose rows are not contiguous
    }
    // Ordered before the model on the same stream; the caching host allocator keeps the
    // pinned block alive until the copy has finished.
    return device_.is_cuda() ? host.to(device_, /*non_blocking=*/true) : host;
  }

  torch::Tensor run(torch::jit::Method method, const std::vector<cv::Mat>& frames) const {
    try {
      torch::jit::IValue out = method({to_input(frames)});
      if (!out.isTensor())
        throw Error(Error::Kind::kModel, method.name() + "() did not return a tensor; "
                                                         "re-export the model");
      return out.toTensor();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(Error::Kind::kRuntime,
                  "the model failed on " + std::to_string(frames.size()) + " frame(s) of " +
                      std::to_string(frames[0].cols) + "x" + std::to_string(frames[0].rows) +
                      " on " + device_.str() + ": " + model_message(e));
    }
  }

  mutable torch::jit::Module module_;
  std::string metadata_;
  torch::Device device_;
};

// Options::optimize: what torch.jit.optimize_for_inference does in Python. A module that is not
// frozen yet (no `training` attribute left means python/export.py --optimize froze it) is frozen
// with the extra methods preserved, and those get the same frozen-graph optimisations (BN
// folding, ...) as forward; then convolutions become oneDNN prepacked ops in every method.
torch::jit::Module optimize_for_cpu(torch::jit::Module module) {
  std::vector<std::string> methods;
  for (const char* name : {"logits", "probabilities"})
    if (module.find_method(name)) methods.emplace_back(name);
  if (module._ivalue()->type()->hasAttribute("training")) {
    module.eval();
    module = torch::jit::freeze(module, methods);  // optimises forward's graph
    for (const auto& name : methods) {
      auto graph = module.get_method(name).graph();
      torch::jit::OptimizeFrozenGraph(graph, /*optimize_numerics=*/true);
    }
  }
  return torch::jit::optimize_for_inference(module, methods);
}

using Loader = std::function<torch::jit::Module(torch::Device, torch::jit::ExtraFilesMap&)>;

std::unique_ptr<ModelBackend> load(const Loader& loader, const std::string& source,
                                   const Options& options) {
  const torch::Device device = parse_device(options.device);
  if (options.half && !device.is_cuda())
    throw Error(Error::Kind::kArgument, "half precision needs a CUDA device, not '" +
                                            options.device + "'; drop it or use cuda");
  configure_threads(options.threads);

  torch::jit::ExtraFilesMap extra{{kMetadataFile, ""}};
  torch::jit::Module module;
  try {
    module = loader(device, extra);
  } catch (const std::exception& e) {
    throw Error(Error::Kind::kModel,
                source + " is not a TorchScript archive (ema-seg models are written by python "
                         "python/export.py): " + first_line(e));
  }
  std::string metadata = std::move(extra[kMetadataFile]);
  if (metadata.empty())
    throw Error(Error::Kind::kModel,
                source + " is a TorchScript archive without metadata.json, so not an ema-seg "
                         "model; export models with python python/export.py");
  module.eval();
  if (options.half) module.to(torch::kHalf);  // the contract: float buffers set the dtype
  if (options.optimize && device.is_cpu()) {  // ignored on CUDA (see Options::optimize)
    try {
      module = optimize_for_cpu(std::move(module));
    } catch (const std::exception& e) {
      throw Error(Error::Kind::kModel, source + " could not be optimised for inference (load "
                                                "it without optimize): " + first_line(e));
    }
  }
  return std::make_unique<TorchScriptBackend>(std::move(module), std::move(metadata), device);
}

}  // namespace

std::unique_ptr<ModelBackend> load_torchscript_file(const std::string& path, const Options& options) {
  namespace fs = std::filesystem;
  const std::string source = "model '" + path + "'";
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status))
    throw Error(Error::Kind::kModel, source + " does not exist; pass the path of a file written "
                                              "by python python/export.py");
  if (!fs::is_regular_file(status))
    throw Error(Error::Kind::kModel, source + " is not a file");
  if (!std::ifstream(path, std::ios::binary).good())
    throw Error(Error::Kind::kModel, source + " cannot be read (check its permissions)");
  return load(
      [&path](torch::Device device, torch::jit::ExtraFilesMap& extra) {
        return torch::jit::load(path, device, extra);
      },
      source, options);
}

std::unique_ptr<ModelBackend> load_torchscript_buffer(const void* data, std::size_t size,
                                                      const Options& options) {
  if (data == nullptr || size == 0)
    throw Error(Error::Kind::kModel, "the in-memory model is empty");
  return load(
      [data, size](torch::Device device, torch::jit::ExtraFilesMap& extra) {
        return torch::jit::load(std::make_shared<MemoryReadAdapter>(data, size), device, extra);
      },
      "in-memory model (" + std::to_string(size) + " bytes)", options);
}

}  // namespace emaseg::detail
