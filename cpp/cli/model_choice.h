// Which model a run uses, with which options, and the note for frame sizes it has no compiled
// network for. Shared by the single-input run (run.cpp) and the multi-stream run (run_streams.cpp).
#pragma once

#include "options.h"

#include <emaseg/emaseg.h>
#include <emaseg/pipeline.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace emaseg::cli {

struct ChosenModel {
  std::unique_ptr<emaseg::Segmenter> segmenter;
  std::string path;
};

// The model options the flags ask for (device, precision, threads, frame limit).
emaseg::Options model_options(const CliOptions& o);

// --model, or the first default that loads here (a .pt2 compiled on another CPU or for another
// torch is passed over, with a note) and takes the input's frame size (a .pt2 compiled for
// fixed sizes only gives way to the .pt, which takes any). `source`: the input, or nullptr when
// the model must take any size.
ChosenModel choose_model(const CliOptions& o, const emaseg::Options& options, const emaseg::FrameSource* source);

// Says once per network size, on stderr, that frames run on the slower any-size model and how to
// compile theirs: never silently slow. Safe to call from several threads.
class UncompiledSizeNote {
 public:
  UncompiledSizeNote(const emaseg::Metadata& meta, std::string model, bool quiet)
      : meta_(meta), model_(std::move(model)), quiet_(quiet) {}
  void check(cv::Size frame);

 private:
  const emaseg::Metadata& meta_;
  std::string model_;
  bool quiet_;
  std::mutex mutex_;
  std::set<std::pair<int, int>> said_;
};

}  // namespace emaseg::cli
