// LibTorch helpers shared by the backends: devices, threads, error messages, in-memory archives.
// Only backend translation units include it (it pulls in LibTorch's headers).
#pragma once

#include "emaseg/emaseg.h"

#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/types.h>

#include <cstddef>
#include <exception>
#include <string>
#include <vector>

namespace emaseg::detail {

// "cpu", "cuda" (GPU 0) or "cuda:N", checked against what is available. Throws Error.
torch::Device parse_device(const std::string& text);

// Options::threads for LibTorch's intra-op pool (and, once per process, its inter-op pool).
void configure_threads(int threads);

// LibTorch messages end in C++ stack traces; users need the first line.
std::string first_line(const std::exception& e);

// What a model raised, without the wrappers LibTorch puts around it (see the definition).
std::string model_message(const std::exception& e);

// Error(kRuntime) for a model call on `frames` that threw `e`: the frames, the device, the
// model's own message.
Error model_failure(const std::vector<cv::Mat>& frames, const torch::Device& device,
                    const std::exception& e);

// N x H x W x 3 uint8 tensor of same-size BGR frames on `device` (aliasing the frame on the CPU
// where that is safe: the models only read their input).
torch::Tensor frames_to_tensor(const std::vector<cv::Mat>& frames, const torch::Device& device);

// Labels tensor (N x H x W, uint8 or int64) -> one cv::Mat per frame; throws Error(kModel) if
// it breaks the contract. `what` names the call for the message.
std::vector<cv::Mat> tensor_to_labels(const torch::Tensor& out, int n, int h, int w,
                                      const std::string& what);
// Probabilities (1 x C x H x W float) -> C planes sharing one allocation.
std::vector<cv::Mat> tensor_to_planes(const torch::Tensor& out, int h, int w,
                                      const std::string& what);

// Reads an archive straight from the caller's memory: loading an embedded model copies
// nothing but the tensors' bytes.
class MemoryReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  MemoryReadAdapter(const void* data, std::size_t size)
      : data_(static_cast<const unsigned char*>(data)), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what) const override;

 private:
  const unsigned char* data_;
  std::size_t size_;
};

}  // namespace emaseg::detail
