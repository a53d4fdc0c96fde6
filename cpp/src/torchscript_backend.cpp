// ModelBackend for TorchScript archives (torch.jit.save), the format python/export.py writes
// for .pt files.
#include "model_backend.h"
#include "torch_util.h"

#include <torch/csrc/jit/passes/frozen_graph_optimizations.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace emaseg::detail {
namespace {

constexpr const char* kMetadataFile = "metadata.json";

class TorchScriptBackend final : public ModelBackend {
 public:
  TorchScriptBackend(torch::jit::Module module, std::string metadata, torch::Device device)
      : module_(std::move(module)), metadata_(std::move(metadata)), device_(device) {}

  const std::string& metadata_json() const override { return metadata_; }
  std::string device() const override { return device_.str(); }

  std::vector<cv::Mat> labels(const std::vector<cv::Mat>& frames) override {
    c10::InferenceMode inference;
    const torch::Tensor out = run(module_.get_method("forward"), frames);
    return tensor_to_labels(out, static_cast<int>(frames.size()), frames[0].rows, frames[0].cols,
                            "forward()");
  }

  std::vector<cv::Mat> probabilities(const cv::Mat& frame) override {
    const auto method = module_.find_method("probabilities");
    if (!method)
      throw Error(Error::Kind::kModel, "the model has no probabilities() method; re-export it "
                                       "with python python/export.py");
    c10::InferenceMode inference;
    return tensor_to_planes(run(*method, {frame}), frame.rows, frame.cols, "probabilities()");
  }

 private:
  torch::Tensor run(torch::jit::Method method, const std::vector<cv::Mat>& frames) const {
    try {
      torch::jit::IValue out = method({frames_to_tensor(frames, device_)});
      if (!out.isTensor())
        throw Error(Error::Kind::kModel, method.name() + "() did not return a tensor; "
                                                         "re-export the model");
      return out.toTensor();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw model_failure(frames, device_, e);
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
