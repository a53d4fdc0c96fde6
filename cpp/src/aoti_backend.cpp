// ModelBackend for AOTInductor packages (.pt2: torch.export + aoti_compile_and_package), the
// fast format python/export.py writes for .pt2 outputs. A package holds compiled machine code
// for one CPU ISA (or GPU) and one torch version: both are checked here, from the package's
// own records, before its shared library is loaded, so a mismatch is a clear error and never
// an illegal instruction.
#include "metadata.h"
#include "model_backend.h"
#include "torch_util.h"

#include <nlohmann/json.hpp>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

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

constexpr const char* kLabelsModel = "model";                // forward: labels
constexpr const char* kProbabilitiesModel = "probabilities";  // optional second model

// "2.13.0+cpu" -> "2.13.0": the local tag names the wheel's build, not its ABI.
std::string base_version(const std::string& version) { return version.substr(0, version.find('+')); }

bool is_package(PyTorchStreamReader& reader) {
  if (!reader.hasRecord("archive_format")) return false;
  const auto [data, size] = reader.getRecord("archive_format");
  return std::string(static_cast<const char*>(data.get()), size) == "pt2";
}

// The string metadata AOTInductor keeps per model (aot_inductor.metadata plus its own AOTI_*
// keys), in data/aotinductor/<model>/<hash>.wrapper_metadata.json.
std::map<std::string, std::string> model_metadata(PyTorchStreamReader& reader,
                                                  const std::string& model, bool& found) {
  const std::string prefix = "data/aotinductor/" + model + "/";
  const std::string suffix = "_metadata.json";
  std::map<std::string, std::string> out;
  found = false;
  for (const auto& name : reader.getAllRecords()) {
    if (name.rfind(prefix, 0) != 0 || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
        name.find(".wrapper") == std::string::npos)
      continue;
    found = true;
    const auto [data, size] = reader.getRecord(name);
    // AOTInductor's own file: unparsable or non-object content just means no tags.
    const auto root = nlohmann::json::parse(static_cast<const char*>(data.get()),
                                            static_cast<const char*>(data.get()) + size, nullptr, false);
    if (!root.is_object()) continue;
    for (const auto& [key, value] : root.items())
      if (value.is_string()) out[key] = value.get<std::string>();
  }
  return out;
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
  bool has_probabilities = false;
  FixedInput fixed;  // --frame-size packages: one frame of one size per call
  std::vector<FrameModel> frame_models;  // --frame-sizes: a model for frames of exactly one size
};

// Everything that decides whether this process can run the package, read without loading it.
PackageFacts inspect(PyTorchStreamReader& reader, const std::string& source,
                     const torch::Device& device) {
  bool found = false;
  const auto meta = model_metadata(reader, kLabelsModel, found);
  if (!found)
    throw Error(Error::Kind::kModel, source + " is a .pt2 package without an AOTInductor model "
                                              "named 'model'; export it with python python/export.py");
  model_metadata(reader, kProbabilitiesModel, found);
  PackageFacts facts;
  facts.has_probabilities = found;
  const auto get = [&meta](const char* key) {
    const auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  facts.metadata_json = get("emaseg_metadata");
  if (facts.metadata_json.empty())
    throw Error(Error::Kind::kModel, source + " is an AOTInductor package without ema-seg "
                                              "metadata; export models with python python/export.py");
  facts.fixed = parse_fixed_input(facts.metadata_json, source);
  facts.frame_models = parse_frame_models(facts.metadata_json, source);
  for (const FrameModel& frame_model : facts.frame_models) {
    model_metadata(reader, frame_model.name, found);
    if (!found)
      throw Error(Error::Kind::kModel, source + " names a model '" + frame_model.name +
                                           "' it does not hold; export it again with python python/export.py");
  }
  const std::string built_with = base_version(get("emaseg_torch_version"));
  if (built_with != base_version(TORCH_VERSION))
    throw Error(Error::Kind::kModel,
                source + " was compiled with torch " + get("emaseg_torch_version") +
                    ", this runtime has LibTorch " + TORCH_VERSION + "; a .pt2 runs only with the "
                    "torch it was compiled with: export it again with this torch, or use the .pt file");
  facts.device_key = get("AOTI_DEVICE_KEY");
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

class AotiBackend final : public ModelBackend {
 public:
  // `open_all`: load the probabilities model now too (for a temporary copy of the package).
  AotiBackend(const std::string& path, PackageFacts facts, torch::Device device,
              const std::string& source, bool open_all)
      : path_(path), facts_(std::move(facts)), device_(device), source_(source) {
    labels_ = open(kLabelsModel);
    if (open_all && facts_.has_probabilities) probabilities_ = open(kProbabilitiesModel);
    if (open_all)
      for (const FrameModel& model : facts_.frame_models) loader(model);
  }

  const std::string& metadata_json() const override { return facts_.metadata_json; }
  std::string device() const override { return device_.str(); }

  std::vector<cv::Mat> labels(const std::vector<cv::Mat>& frames) override {
    const FrameModel* sized = frame_model(frames[0].size());
    if ((sized != nullptr || facts_.fixed.batch == 1) && frames.size() > 1) {  // one frame per call
      std::vector<cv::Mat> all;
      for (const cv::Mat& frame : frames) all.push_back(labels({frame}).front());
      return all;
    }
    const torch::Tensor out = sized != nullptr ? run(loader(*sized), frames, false) : run(*labels_, frames);
    return tensor_to_labels(out, static_cast<int>(frames.size()), frames[0].rows, frames[0].cols,
                            "the .pt2 model");
  }

  std::vector<cv::Mat> probabilities(const cv::Mat& frame) override {
    if (!facts_.has_probabilities)
      throw Error(Error::Kind::kModel, source_ + " has no probabilities model; export it again "
                                                 "with python python/export.py");
    if (!probabilities_) probabilities_ = open(kProbabilitiesModel);  // most apps never ask
    return tensor_to_planes(run(*probabilities_, {frame}), frame.rows, frame.cols,
                            "the .pt2 probabilities model");
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> open(const char* model) const {
    try {
      return std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          path_, model, /*run_single_threaded=*/false, /*num_runners=*/1,
          device_.is_cuda() ? device_.index() : c10::DeviceIndex(-1));
    } catch (const std::exception& e) {
      throw Error(Error::Kind::kModel, source_ + " could not be loaded: " + first_line(e));
    }
  }

  // The model compiled for frames of exactly `size`, if the package has one.
  const FrameModel* frame_model(cv::Size size) const {
    for (const FrameModel& model : facts_.frame_models)
      if (model.size == size) return &model;
    return nullptr;
  }

  // Opened on the first frame of its size: an app at one resolution loads one model.
  torch::inductor::AOTIModelPackageLoader& loader(const FrameModel& model) {
    auto& slot = frame_loaders_[model.name];
    if (!slot) slot = open(model.name.c_str());
    return *slot;
  }

  torch::Tensor run(torch::inductor::AOTIModelPackageLoader& loader, const std::vector<cv::Mat>& frames,
                    bool check_fixed = true) const {
    const cv::Size size = frames[0].size();
    if (check_fixed && ((facts_.fixed.height > 0 && size.height != facts_.fixed.height) ||
                        (facts_.fixed.width > 0 && size.width != facts_.fixed.width)))
      throw Error(Error::Kind::kArgument,
                  source_ + " takes only " + std::to_string(facts_.fixed.width) + "x" +
                      std::to_string(facts_.fixed.height) + " frames (exported with --frame-size " +
                      std::to_string(facts_.fixed.height) + "x" + std::to_string(facts_.fixed.width) +
                      "), not " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                      sizes_note() + "; export it without --frame-size for frames of any size");
    c10::InferenceMode inference;
    try {
      std::vector<torch::Tensor> out = loader.run({frames_to_tensor(frames, device_)});
      if (out.size() != 1)
        throw Error(Error::Kind::kModel, source_ + " returned " + std::to_string(out.size()) +
                                             " outputs, not 1; export it again");
      return out[0];
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw model_failure(frames, device_, e);
    }
  }

  std::string sizes_note() const {  // " or W x H, ..." for the frame models
    std::string note;
    for (const FrameModel& model : facts_.frame_models)
      note += std::string(note.empty() ? " or " : ", ") + std::to_string(model.size.width) + "x" +
              std::to_string(model.size.height);
    return note;
  }

  std::string path_;  // a temporary copy for in-memory packages: valid only in the constructor
  PackageFacts facts_;
  torch::Device device_;
  std::string source_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> labels_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> probabilities_;
  std::map<std::string, std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> frame_loaders_;
};

std::unique_ptr<ModelBackend> load(const std::string& path, PyTorchStreamReader& reader,
                                   const std::string& source, const Options& options,
                                   bool in_memory) {
  const torch::Device device = parse_device(options.device);
  if (options.half)
    throw Error(Error::Kind::kArgument, "half precision is fixed when a .pt2 is compiled: export "
                                        "it with --dtype float16 instead of asking for half");
  configure_threads(options.threads);
  // A temporary copy is gone after construction, so both models are loaded at once then.
  return std::make_unique<AotiBackend>(path, inspect(reader, source, device), device, source,
                                       in_memory);
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
