#include "model_choice.h"

#include "report.h"

#include <filesystem>
#include <vector>

namespace emaseg::cli {
namespace {

namespace fs = std::filesystem;

// The default model, fastest first: the AOTInductor package where it runs on this machine,
// else the TorchScript file (which runs anywhere).
constexpr const char* kDefaultModels[] = {"models/emanet_demo.pt2", "models/emanet_demo.pt"};

// The default models that exist, in the current folder, else beside the binary (../models).
std::vector<std::string> default_models() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& root : {fs::path("."), ec ? fs::path() : exe.parent_path() / ".."}) {
    if (root.empty()) continue;
    std::vector<std::string> found;
    for (const char* name : kDefaultModels) {
      const fs::path path = root == "." ? fs::path(name) : (root / name).lexically_normal();
      if (fs::exists(path, ec)) found.push_back(path.string());
    }
    if (!found.empty()) return found;
  }
  throw emaseg::Error(emaseg::Error::Kind::kModel,
                      std::string("no --model given and no ") + kDefaultModels[1] + " or " + kDefaultModels[0] +
                          " in the current folder or beside ema_seg; pass --model FILE.pt or export one "
                          "with python python/export.py");
}

// The export command that compiles `model`'s network for `net` (HxW) into the package itself.
std::string compile_command(const std::string& model, cv::Size net) {
  fs::path checkpoint = fs::path(model).replace_extension(".pth");  // the demo's: models/emanet_demo.pth
  std::error_code ec;
  const std::string source = fs::exists(checkpoint, ec) ? checkpoint.string() : "CHECKPOINT.pth";
  return "python python/export.py --checkpoint " + source + " --add-to " + model + " --output " + model +
         " --network-sizes " + std::to_string(net.height) + "x" + std::to_string(net.width);
}

}  // namespace

emaseg::Options model_options(const CliOptions& o) {
  emaseg::Options options;
  options.device = o.device;
  options.half = o.fp16;
  options.optimize = o.optimize;
  options.threads = o.threads;
  options.max_pixels = static_cast<long long>(o.max_megapixels * 1e6);
  return options;
}

ChosenModel choose_model(const CliOptions& o, const emaseg::Options& options, const emaseg::FrameSource* source) {
  if (!o.model.empty()) return {std::make_unique<emaseg::Segmenter>(o.model, options), o.model};
  const std::vector<std::string> candidates = default_models();
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const bool last = i + 1 == candidates.size();
    std::unique_ptr<emaseg::Segmenter> segmenter;
    try {
      segmenter = std::make_unique<emaseg::Segmenter>(candidates[i], options);
    } catch (const emaseg::Error& e) {
      if (e.kind() != emaseg::Error::Kind::kModel || last) throw;
      if (!o.quiet) print_stderr("note", std::string(e.what()) + "; using " + candidates[i + 1]);
      continue;
    }
    const emaseg::Metadata& meta = segmenter->metadata();
    const bool fits = meta.any_size || (source != nullptr && o.images.empty() && meta.takes(source->frame_size()));
    if (fits || last) return {std::move(segmenter), candidates[i]};
    if (!o.quiet)
      print_stderr("note", candidates[i] + " holds no model for these frames' network size and no any-size "
                                           "model; using " + candidates[i + 1]);
  }
  throw emaseg::Error(emaseg::Error::Kind::kModel, "no default model loads");  // not reached
}

void UncompiledSizeNote::check(cv::Size frame) {
  if (quiet_ || meta_.compiled_for(frame)) return;
  const cv::Size net = meta_.network_size(frame);
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!said_.insert({net.width, net.height}).second) return;
  }
  print_stderr("note", std::to_string(frame.width) + "x" + std::to_string(frame.height) +
                           " frames run the network at " + std::to_string(net.height) + "x" +
                           std::to_string(net.width) + ", which " + model_ +
                           " has no compiled model for: they run on its slower any-size model. Compile it "
                           "once with: " + compile_command(model_, net));
}

}  // namespace emaseg::cli
