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

}  // namespace emaseg::detail
