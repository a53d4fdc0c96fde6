// The seam between Segmenter and an inference engine: TorchScript archives (.pt) and
// AOTInductor packages (.pt2) today. Nothing here mentions torch, so engines come and go
// without touching the public API.
#pragma once

#include "emaseg/emaseg.h"

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace emaseg::detail {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;

  // The archive's metadata.json, unparsed.
  virtual const std::string& metadata_json() const = 0;
  // The device the model runs on, e.g. "cpu" or "cuda:0".
  virtual std::string device() const = 0;
  // Labels of `frames` (non-empty, all CV_8UC3 and of one size, checked by the caller):
  // CV_8U maps for uint8 model output, CV_32S for int64. Not thread-safe.
  virtual std::vector<cv::Mat> labels(const std::vector<cv::Mat>& frames) = 0;
  // Softmax probabilities of one frame as num_classes CV_32F planes. Not thread-safe.
  virtual std::vector<cv::Mat> probabilities(const cv::Mat& frame) = 0;
};

// Loads a model file or buffer with the backend its content calls for (not its name).
// Throw Error: kModel for files that are not ema-seg models, kDevice and kArgument for
// unusable Options.
std::unique_ptr<ModelBackend> load_model_file(const std::string& path, const Options& options);
std::unique_ptr<ModelBackend> load_model_buffer(const void* data, std::size_t size,
                                                const Options& options);

// TorchScript: kModel for files that are not TorchScript or lack metadata.json.
std::unique_ptr<ModelBackend> load_torchscript_file(const std::string& path, const Options& options);
std::unique_ptr<ModelBackend> load_torchscript_buffer(const void* data, std::size_t size,
                                                      const Options& options);

// AOTInductor packages: kModel also for a package compiled for a CPU ISA this machine lacks
// or for another torch version (checked before its code is loaded).
bool is_aoti_package_file(const std::string& path);
bool is_aoti_package_buffer(const void* data, std::size_t size);
std::unique_ptr<ModelBackend> load_aoti_file(const std::string& path, const Options& options);
std::unique_ptr<ModelBackend> load_aoti_buffer(const void* data, std::size_t size,
                                               const Options& options);

}  // namespace emaseg::detail
