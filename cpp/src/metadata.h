// metadata.json (docs/model_file_format.md) -> emaseg::Metadata, with checks that turn a
// wrong or foreign file into an Error(kModel) the user can act on.
#pragma once

#include "emaseg/emaseg.h"

#include <string>

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

}  // namespace emaseg::detail
