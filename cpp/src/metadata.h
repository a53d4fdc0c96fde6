// metadata.json (docs/model_file_format.md) -> emaseg::Metadata, with checks that turn a
// wrong or foreign file into an Error(kModel) the user can act on.
#pragma once

#include "emaseg/emaseg.h"

#include <string>
#include <vector>

namespace emaseg::detail {

// The only format_version this runtime reads.
constexpr int kFormatVersion = 1;

// `source` names the model in messages (a path or "model buffer").
Metadata parse_metadata(const std::string& json, const std::string& source);

// metadata.json's "fixed_input": the dimensions a .pt2 package was specialised to (export.py
// --frame-size, or what torch.export could not keep symbolic); 0 where it takes any size.
struct FixedInput {
  int batch = 0;
  int height = 0;
  int width = 0;
};
FixedInput parse_fixed_input(const std::string& json, const std::string& source);

// metadata.json's "frame_models" ({"HxW": model name}): the labels models of a .pt2 package
// compiled for frames of exactly one size (export.py --frame-sizes); empty when there are none.
struct FrameModel {
  cv::Size size;     // (width, height)
  std::string name;  // the package's model name
};
std::vector<FrameModel> parse_frame_models(const std::string& json, const std::string& source);

}  // namespace emaseg::detail
