// ModelBackend for AOTInductor packages (.pt2: torch.export + AOTInductor, format version 2), the
// fast format python/export.py writes for .pt2 outputs: network models compiled for a few network
// input sizes and for any size, with the frame work of frame_work.h around them. A package holds compiled machine code
// for one CPU ISA (or GPU) and one torch version: both are checked here, from the package's
// own records, before its shared library is loaded, so a mismatch is a clear error and never
// an illegal instruction.
#include "frame_work.h"
#include "metadata.h"
#include "model_backend.h"
#include "torch_util.h"

#include <nlohmann/json.hpp>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace emaseg::detail {
namespace {

namespace fs = std::filesystem;
using caffe2::serialize::PyTorchStreamReader;

constexpr const char* kRecord = "emaseg/package.json";         // metadata, torch, CPU flags, device
constexpr const char* kAnySizeRecord = "emaseg/any_size.pt";    // frozen TorchScript network

// "2.13.0+cpu" -> "2.13.0": the local tag names the wheel's build, not its ABI.
std::string base_version(const std::string& version) { return version.substr(0, version.find('+')); }

bool is_package(PyTorchStreamReader& reader) {
  if (!reader.hasRecord("archive_format")) return false;
  const auto [data, size] = reader.getRecord("archive_format");
  return std::string(static_cast<const char*>(data.get()), size) == "pt2";
}

// A record of the archive as a string ("" when absent).
std::string record(PyTorchStreamReader& reader, const std::string& name) {
  if (!reader.hasRecord(name)) return {};
  const auto [data, size] = reader.getRecord(name);
  return std::string(static_cast<const char*>(data.get()), size);
}

// Whether the archive holds an AOTInductor model of this name.
bool has_model(PyTorchStreamReader& reader, const std::string& model) {
  const std::string prefix = "data/aotinductor/" + model + "/";
  for (const auto& name : reader.getAllRecords())
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

std::set<std::string> cpu_flags() {  // what this CPU can run, as /proc/cpuinfo names it
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  while (std::getline(info, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string flag; words >> flag;) flags.insert(flag);
    return flags;
  }
  return {};
}

struct PackageFacts {
  std::string metadata_json;  // ema-seg's metadata.json
  std::string device_key;     // "cpu" or "cuda"
  NetworkModels models;       // the compiled network sizes, and whether any other size runs
  std::string any_size;       // the any-size network: a frozen TorchScript archive ("" if none)
};

// Everything that decides whether this process can run the package, read without loading it.
PackageFacts inspect(PyTorchStreamReader& reader, const std::string& source,
                     const torch::Device& device) {
  const std::string text = record(reader, kRecord);
  if (text.empty()) {
    if (has_model(reader, "model"))  // what ema-seg wrote before the network models
      throw Error(Error::Kind::kModel, source + " is an ema-seg .pt2 of format version 1 (models per frame "
                                                "size); this runtime reads version 2: export it again with "
                                                "python python/export.py");
    throw Error(Error::Kind::kModel, source + " is a .pt2 package without ema-seg's record; export models "
                                              "with python python/export.py");
  }
  const auto tags = nlohmann::json::parse(text, nullptr, false);
  if (!tags.is_object())
    throw Error(Error::Kind::kModel, source + ": its ema-seg record is not a JSON object; export it again "
                                              "with python python/export.py");
  const auto get = [&tags](const char* key) {
    const auto it = tags.find(key);
    return it == tags.end() || !it->is_string() ? std::string() : it->get<std::string>();
  };
  PackageFacts facts;
  facts.metadata_json = get("emaseg_metadata");
  if (facts.metadata_json.empty())
    throw Error(Error::Kind::kModel, source + " is a .pt2 package without ema-seg metadata; export models "
                                              "with python python/export.py");
  facts.models = parse_network_models(facts.metadata_json, source);
  for (const NetworkModel& model : facts.models.sized)
    if (!has_model(reader, model.name))
      throw Error(Error::Kind::kModel, source + " names a model '" + model.name +
                                           "' it does not hold; export it again with python python/export.py");
  if (facts.models.any_size) {
    facts.any_size = record(reader, kAnySizeRecord);
    if (facts.any_size.empty())
      throw Error(Error::Kind::kModel, source + " lacks its any-size network; export it again with python "
                                                "python/export.py");
  }
  const std::string built_with = base_version(get("emaseg_torch_version"));
  if (built_with != base_version(TORCH_VERSION))
    throw Error(Error::Kind::kModel,
                source + " was compiled with torch " + get("emaseg_torch_version") +
                    ", this runtime has LibTorch " + TORCH_VERSION + "; a .pt2 runs only with the "
                    "torch it was compiled with: export it again with this torch, or use the .pt file");
  facts.device_key = get("emaseg_device");
  if (facts.device_key.empty()) facts.device_key = "cpu";
  if (facts.device_key != (device.is_cuda() ? "cuda" : "cpu"))
    throw Error(Error::Kind::kArgument,
                source + " was compiled for " + facts.device_key + ", not for " + device.str() +
                    "; export it with --device " + (device.is_cuda() ? "cuda" : "cpu") +
                    " or run it on " + facts.device_key);
  if (device.is_cpu()) {
    const std::set<std::string> have = cpu_flags();
    std::istringstream words(get("emaseg_cpu_flags"));
    std::string missing;
    for (std::string flag; words >> flag;)
      if (!have.empty() && !have.count(flag)) missing += (missing.empty() ? "" : " ") + flag;
    if (!missing.empty())
      throw Error(Error::Kind::kModel,
                  source + " was compiled for a CPU with " + missing + ", which this CPU lacks "
                  "(running it would crash); export it again on this machine (python "
                  "python/export.py ... --output NAME.pt2) or use the .pt file");
  }
  return facts;
}

// Loaders take a path; an in-memory package is written to a private temporary file first and
// removed as soon as it is loaded (the loader unpacks it elsewhere).
class TempPackage {
 public:
  TempPackage(const void* data, std::size_t size) {
    std::string name = (fs::temp_directory_path() / "emaseg-XXXXXX.pt2").string();
    const int fd = ::mkstemps(name.data(), 4);
    if (fd < 0) throw Error(Error::Kind::kModel, "cannot write the in-memory .pt2 to a temporary file");
    FILE* file = ::fdopen(fd, "wb");
    const bool ok = file != nullptr && std::fwrite(data, 1, size, file) == size;
    if (file == nullptr || std::fclose(file) != 0 || !ok) {
      std::remove(name.c_str());
      throw Error(Error::Kind::kModel, "cannot write the in-memory .pt2 to '" + name + "'");
    }
    path_ = name;
  }
  TempPackage(const TempPackage&) = delete;
  TempPackage& operator=(const TempPackage&) = delete;
  ~TempPackage() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Each frame: the exact resize to its network size, the network compiled for that size (or the
// any-size one), then the labels at the frame size (frame_work.h).
class AotiBackend final : public ModelBackend {
 public:
  // `open_all`: load every model now (for a temporary copy of the package, gone afterwards).
  AotiBackend(const std::string& path, PackageFacts facts, Metadata metadata, torch::Device device,
              const std::string& source, bool open_all)
      : path_(path), facts_(std::move(facts)), meta_(std::move(metadata)), device_(device), source_(source),
        wide_(meta_.label_dtype == "int64") {
    if (facts_.models.any_size) {
      try {
        std::istringstream archive(facts_.any_size);
        any_size_ = std::make_unique<torch::jit::Module>(torch::jit::load(archive, device_));
      } catch (const std::exception& e) {
        throw Error(Error::Kind::kModel, source_ + ": its any-size network could not be loaded: " + first_line(e));
      }
      facts_.any_size.clear();
    }
    if (open_all)
      for (const NetworkModel& model : facts_.models.sized) loader(model.name);
    else if (!facts_.models.sized.empty())  // a missing or broken library shows at load time
      loader(facts_.models.sized.front().name);
  }

  const std::string& metadata_json() const override { return facts_.metadata_json; }
  std::string device() const override { return device_.str(); }

  std::vector<cv::Mat> labels(const std::vector<cv::Mat>& frames) override {
    std::vector<cv::Mat> all;
    for (const cv::Mat& frame : frames) {
      // On the host once: the cells and the frame labels are CPU loops (CUDA: one copy back).
      const torch::Tensor scores = network(frame).to(torch::kCPU).contiguous();
      const cv::Size net(static_cast<int>(scores.size(3)), static_cast<int>(scores.size(2)));
      if (net == frame.size()) {
        all.push_back(argmax_labels(scores, wide_));
        continue;
      }
      auto& labels = frame_labels_[{net.width, net.height, frame.cols, frame.rows}];
      if (!labels) labels = std::make_unique<FrameLabels>(net, frame.size(), meta_.align_corners);
      all.push_back((*labels)(scores, network_cells(scores, wide_)));
    }
    return all;
  }

  std::vector<cv::Mat> probabilities(const cv::Mat& frame) override {
    return frame_probabilities(network(frame), frame.size(), meta_.align_corners);
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> open(const std::string& model) const {
    try {
      return std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          path_, model, /*run_single_threaded=*/false, /*num_runners=*/1,
          device_.is_cuda() ? device_.index() : c10::DeviceIndex(-1));
    } catch (const std::exception& e) {
      throw Error(Error::Kind::kModel, source_ + " could not be loaded: " + first_line(e));
    }
  }

  // Opened on the first frame that needs it: an app at one resolution loads one model.
  torch::inductor::AOTIModelPackageLoader& loader(const std::string& name) {
    auto& slot = loaders_[name];
    if (!slot) slot = open(name);
    return *slot;
  }

  // The frame's scores (1 x C x h x w) at its network size, from the network for that size.
  torch::Tensor network(const cv::Mat& frame) {
    const cv::Size net = meta_.network_size(frame.size());
    const std::string* name = nullptr;
    for (const NetworkModel& model : facts_.models.sized)
      if (model.size == net) name = &model.name;
    if (name == nullptr && !any_size_)
      throw Error(Error::Kind::kArgument,
                  source_ + " has no model for " + std::to_string(frame.cols) + "x" + std::to_string(frame.rows) +
                      " frames (network input " + std::to_string(net.height) + "x" + std::to_string(net.width) +
                      ") and no any-size model; add it with python python/export.py --checkpoint CKPT --add-to " +
                      "NAME.pt2 --output NAME.pt2 --network-sizes " + std::to_string(net.height) + "x" +
                      std::to_string(net.width));
    cv::Mat input = frame;
    if (net != frame.size()) {
      auto& resize = resizes_[{frame.cols, frame.rows, net.width, net.height}];
      if (!resize) resize = std::make_unique<ExactResize>(frame.size(), net);
      (*resize)(frame, input);
    }
    c10::InferenceMode inference;
    torch::Tensor scores;
    try {
      const torch::Tensor images = frames_to_tensor({input}, device_);
      if (name != nullptr) {
        std::vector<torch::Tensor> out = loader(*name).run({images});
        if (out.size() == 1) scores = out[0];
      } else {
        scores = any_size_->forward({images}).toTensor();
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw model_failure({frame}, device_, e);
    }
    if (!scores.defined() || scores.dim() != 4 || scores.size(0) != 1 || scores.size(2) != net.height ||
        scores.size(3) != net.width)
      throw Error(Error::Kind::kModel, source_ + " returned outputs outside its contract (1 x C x h x w "
                                                 "scores at the network size); export it again");
    return scores;
  }

  using SizePair = std::array<int, 4>;  // (from width, height, to width, height)
  std::string path_;  // a temporary copy for in-memory packages: valid only in the constructor
  PackageFacts facts_;
  Metadata meta_;
  torch::Device device_;
  std::string source_;
  bool wide_;  // int64 labels (more than 255 classes)
  std::unique_ptr<torch::jit::Module> any_size_;
  std::map<std::string, std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> loaders_;
  std::map<SizePair, std::unique_ptr<ExactResize>> resizes_;
  std::map<SizePair, std::unique_ptr<FrameLabels>> frame_labels_;
};

std::unique_ptr<ModelBackend> load(const std::string& path, PyTorchStreamReader& reader,
                                   const std::string& source, const Options& options,
                                   bool in_memory) {
  const torch::Device device = parse_device(options.device);
  if (options.half)
    throw Error(Error::Kind::kArgument, "half precision is fixed when a .pt2 is compiled: export "
                                        "it with --dtype float16 instead of asking for half");
  configure_threads(options.threads);
  PackageFacts facts = inspect(reader, source, device);
  Metadata metadata = parse_metadata(facts.metadata_json, source);
  // A temporary copy is gone after construction, so every model is loaded at once then.
  return std::make_unique<AotiBackend>(path, std::move(facts), std::move(metadata), device, source, in_memory);
}

}  // namespace

bool is_aoti_package_file(const std::string& path) {
  try {
    PyTorchStreamReader reader(path);
    return is_package(reader);
  } catch (const std::exception&) {
    return false;
  }
}

bool is_aoti_package_buffer(const void* data, std::size_t size) {
  try {
    PyTorchStreamReader reader(std::make_shared<MemoryReadAdapter>(data, size));
    return is_package(reader);
  } catch (const std::exception&) {
    return false;
  }
}

std::unique_ptr<ModelBackend> load_aoti_file(const std::string& path, const Options& options) {
  PyTorchStreamReader reader(path);
  return load(path, reader, "model '" + path + "'", options, false);
}

std::unique_ptr<ModelBackend> load_aoti_buffer(const void* data, std::size_t size,
                                               const Options& options) {
  const TempPackage copy(data, size);
  PyTorchStreamReader reader(std::make_shared<MemoryReadAdapter>(data, size));
  return load(copy.path(), reader, "in-memory model (" + std::to_string(size) + " bytes)", options,
              true);
}

}  // namespace emaseg::detail
