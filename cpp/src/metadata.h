// metadata.json (docs/model_file_format.md) -> emaseg::Metadata, with checks that turn a
// wrong or foreign file into an Error(kModel) the user can act on.
#pragma once

#include "emaseg/emaseg.h"

#include <string>
#include <vector>

namespace emaseg::detail {

// The format_version this runtime reads: 1 for .pt files, 2 for .pt2 packages (network models).
constexpr int kFormatVersion = 1;
constexpr int kPackageFormatVersion = 2;

// `source` names the model in messages (a path or "model buffer").
Metadata parse_metadata(const std::string& json, const std::string& source);

// metadata.json's "network_models" ({"HxW": model name}) and "any_size" of a .pt2 package: the
// network input sizes it holds a compiled network model for, and whether its "net" model takes
// any other size.
struct NetworkModel {
  cv::Size size;     // the network input (width, height)
  std::string name;  // the package's model name
};
struct NetworkModels {
  std::vector<NetworkModel> sized;
  bool any_size = false;
};
NetworkModels parse_network_models(const std::string& json, const std::string& source);

}  // namespace emaseg::detail
