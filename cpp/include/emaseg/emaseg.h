// ema-seg runtime: run an exported EMANet model (models/NAME.pt, see docs/model_file_format.md)
// on OpenCV frames.
//
//   #include <emaseg/emaseg.h>
//
//   emaseg::Options options;
//   options.device = "cuda:0";              // or "cpu" (default), "cuda"
//   options.half = true;                    // float16 weights and activations, CUDA only
//   emaseg::Segmenter segmenter("models/emanet_demo.pt", options);
//
//   cv::Mat frame = cv::imread("street.jpg");               // BGR, CV_8UC3
//   cv::Mat labels = segmenter.segment(frame);              // CV_8U, one class id per pixel
//   cv::Mat shown = segmenter.overlay(frame, labels, 0.5);  // BGR, the model's palette
//   std::cout << segmenter.metadata().class_names[labels.at<uchar>(0, 0)] << "\n";
//
// Errors are thrown as emaseg::Error; what() says what went wrong and what to do about it.
//
// Thread safety: a Segmenter may be shared by several threads. Calls that run the model
// (segment, segment_batch, probabilities, warmup) are serialised by an internal mutex, so
// concurrent calls are safe but do not run in parallel; use one Segmenter per thread (or a
// batch) for parallel throughput. metadata, colorize and overlay never block.
// Options::threads is process-wide state of LibTorch (see there).
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace emaseg {

// Every failure of the runtime. kind() lets an app react (the CLI maps it to exit codes).
// `text` with terminal control characters escaped (C0 but line breaks and tabs, DEL, UTF-8's C1
// as \xNN, NN the code point): a crafted file name or URL in a message cannot clear a screen or retitle
// a terminal. Every Error message passes through it.
std::string printable(std::string_view text);

class Error : public std::runtime_error {
 public:
  enum class Kind {
    kModel,     // model file missing, unreadable, not TorchScript, not an ema-seg model
    kDevice,    // requested device unavailable (e.g. CUDA with a CPU-only LibTorch)
    kArgument,  // invalid option or call argument (bad device string, empty frame, ...)
    kInput,     // a video, camera, stream or image that cannot be opened or read
    kOutput,    // a file or folder that cannot be written
    kRuntime,   // the model failed while running (e.g. out of memory)
  };
  Error(Kind kind, const std::string& message) : std::runtime_error(printable(message)), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

struct Options {
  std::string device = "cpu";  // "cpu", "cuda" (current GPU) or "cuda:N"
  bool half = false;           // run in float16 (CUDA only); labels stay the same type
  // LibTorch intra-op threads, 0..max_threads(); 0 keeps LibTorch's default (one per core).
  // Process-wide: the last Segmenter created sets it. The inter-op pool is sized once per
  // process, by the first Segmenter that asks for threads; later values are ignored.
  int threads = 0;
  // Frames with more pixels are refused with Error(kArgument) before the model sees them:
  // memory grows with the frame (scores are computed at its full size), and a 9000x9000 image
  // took 7.3 GB. The default admits 8K UHD (7680x4320, 33 Mpx). 0: no limit.
  long long max_pixels = 40'000'000;
  // CPU only: freeze the module and run TorchScript's optimize_for_inference at load (oneDNN
  // prepacked convolutions; measured 1.26x faster for R-50-D8 at 512x1024 on 2 threads, more
  // memory; results equal to rounding). Works on files already frozen by export.py --optimize.
  // Ignored on CUDA devices. Loading takes longer (the weights are repacked).
  bool optimize = false;
  int warmup_runs = 0;                   // model runs at construction, on a warmup_size frame
  cv::Size warmup_size = cv::Size(512, 512);  // (width, height), ideally the frames' size
};

// The model's metadata.json (docs/model_file_format.md), parsed.
struct Metadata {
  std::string format;  // "emaseg.torchscript" (.pt) or "emaseg.aoti" (.pt2)
  int format_version = 0;
  std::string config_name;
  int num_classes = 0;
  std::vector<std::string> class_names;              // num_classes names
  std::vector<std::array<std::uint8_t, 3>> palette;  // num_classes RGB colours
  std::array<double, 3> mean{};    // RGB normalisation inside the model ("mean")
  std::array<double, 3> stddev{};  // ("std")
  std::string mode;         // "whole" or "slide"
  std::string resize_type;  // "scale", "size", "short_side" or "none"
  std::vector<int> resize;  // the numbers of that resize: [long, short], [H, W], [N] or []
  std::array<int, 2> slide_crop{};    // [H, W] (mode == "slide")
  std::array<int, 2> slide_stride{};  // [H, W]
  bool flip = false;
  bool align_corners = false;
  std::string dtype;        // "float32", "float16" or "bfloat16" at export
  std::string label_dtype;  // "uint8" or "int64"
  std::string checkpoint_sha256;
  std::string torch_version;
  std::string emaseg_version;
  // The network input sizes a .pt2 holds a compiled network for, the fastest code; frames whose
  // network size is not among them run the any-size model (if `any_size`). A .pt takes any size.
  std::vector<cv::Size> network_sizes;
  bool any_size = true;
  // The network input size of frames of `frame` size under `resize` (keep-ratio scale: it depends
  // on the aspect ratio only), as the model computes it.
  cv::Size network_size(cv::Size frame) const;
  // Whether frames of `size` run: any size, or a compiled network size.
  bool takes(cv::Size frame) const;
  // Whether frames of `size` run on code compiled for their network size (always for a .pt).
  bool compiled_for(cv::Size frame) const;
  std::string json;  // the raw metadata.json
};

class Segmenter {
 public:
  // Loads an exported model file. Throws Error (kModel, kDevice, kArgument).
  explicit Segmenter(const std::string& model_path, const Options& options = {});
  // Loads a model from memory, e.g. bytes embedded with the CMake helper emaseg_embed_model().
  // The bytes are only read during the call.
  Segmenter(const void* data, std::size_t size, const Options& options = {});
  Segmenter(Segmenter&&) noexcept;
  Segmenter& operator=(Segmenter&&) noexcept;
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;
  ~Segmenter();

  const Metadata& metadata() const;
  const Options& options() const;
  std::string device() const;  // the device in use, e.g. "cpu" or "cuda:0"

  // Labels of a BGR CV_8UC3 frame (at least 8x8, at most Options::max_pixels): CV_8U with the
  // frame's size, or CV_32S for models with more than 256 classes. Throws Error(kArgument) for
  // other frames, Error(kRuntime) with the model's own message if the model fails.
  cv::Mat segment(const cv::Mat& bgr) const;
  // Labels of several frames in one model call per run of same-size frames; equal to
  // segment() on each.
  std::vector<cv::Mat> segment_batch(const std::vector<cv::Mat>& frames) const;
  // Softmax probabilities: num_classes CV_32F planes of the frame's size (one allocation).
  std::vector<cv::Mat> probabilities(const cv::Mat& bgr) const;
  // Runs the model `runs` times on a black frame of `size`, so that lazy initialisation and
  // the TorchScript profiling runs happen before timed or latency-sensitive work.
  void warmup(cv::Size size, int runs = 2) const;

  // BGR image of labels in the model's palette; labels outside it are black.
  cv::Mat colorize(const cv::Mat& labels) const;
  // frame * (1 - alpha) + colorize(labels) * alpha; alpha in [0, 1].
  cv::Mat overlay(const cv::Mat& bgr, const cv::Mat& labels, double alpha = 0.5) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The largest Options::threads accepted: 4 x this machine's hardware threads. More threads
// than cores only make OpenMP's spinning workers fight (1000 threads ran at 0.47 fps).
int max_threads();

// Colour helpers that need no model: `palette` holds RGB colours as in Metadata::palette.
cv::Mat colorize(const cv::Mat& labels, const std::vector<std::array<std::uint8_t, 3>>& palette);
cv::Mat overlay(const cv::Mat& bgr, const cv::Mat& labels,
                const std::vector<std::array<std::uint8_t, 3>>& palette, double alpha = 0.5);

}  // namespace emaseg
