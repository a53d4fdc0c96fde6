#include "metadata.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <utility>

namespace emaseg::detail {
namespace {

using Json = nlohmann::json;

// The member `key` of an object, or nullptr (also when `object` is not an object).
const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// Reads keys of one metadata object; every failure names the key and the model.
class Reader {
 public:
  Reader(const Json& root, const std::string& source) : root_(root), source_(source) {}

  [[noreturn]] void fail(const std::string& what,
                         const char* hint = "re-export the model with python python/export.py") const {
    throw Error(Error::Kind::kModel, "model " + source_ + ": metadata.json " + what + "; " + hint);
  }

  const Json* get(const char* key, bool required) const {
    const Json* value = member(root_, key);
    if (value == nullptr && required) fail(std::string("lacks the key \"") + key + "\"");
    return value;
  }

  std::string text(const char* key, bool required = false) const {
    const Json* value = get(key, required);
    if (value == nullptr) return {};
    if (!value->is_string()) fail(std::string("\"") + key + "\" is not a string");
    return value->get<std::string>();
  }

  bool flag(const char* key) const {
    const Json* value = get(key, false);
    if (value == nullptr) return false;
    if (!value->is_boolean()) fail(std::string("\"") + key + "\" is not true or false");
    return value->get<bool>();
  }

  int integer(const Json& value, const std::string& what) const {
    const double number = value.is_number() ? value.get<double>() : 0.5;
    if (number != std::floor(number) || std::abs(number) > 1e9) fail(what + " is not an integer");
    return static_cast<int>(number);
  }

  int integer(const char* key, bool required) const {
    const Json* value = get(key, required);
    return value == nullptr ? 0 : integer(*value, std::string("\"") + key + "\"");
  }

  // A list of numbers of a given length (0 = any), or empty when the key is absent.
  std::vector<double> numbers(const Json* value, const std::string& what, std::size_t size) const {
    if (value == nullptr) return {};
    if (!value->is_array() || (size != 0 && value->size() != size))
      fail(what + " is not a list of " + (size ? std::to_string(size) + " " : "") + "numbers");
    std::vector<double> out;
    for (const Json& item : *value) {
      if (!item.is_number()) fail(what + " holds a non-number");
      out.push_back(item.get<double>());
    }
    return out;
  }

  const Json& root() const { return root_; }

 private:
  const Json& root_;
  const std::string& source_;
};

std::array<int, 2> pair_of(const Reader& reader, const Json* object, const char* key) {
  const Json* value = object == nullptr ? nullptr : member(*object, key);
  const auto numbers = reader.numbers(value, std::string("slide.") + key, 2);
  if (numbers.empty()) return {0, 0};
  return {static_cast<int>(numbers[0]), static_cast<int>(numbers[1])};
}

Json parse_root(const std::string& json, const std::string& source) {
  Json root;
  try {
    root = Json::parse(json);
  } catch (const Json::parse_error& e) {
    throw Error(Error::Kind::kModel, "model " + source + ": metadata.json is not valid JSON (" +
                                         e.what() + "); re-export the model with python python/export.py");
  }
  if (!root.is_object())
    throw Error(Error::Kind::kModel, "model " + source +
                                         ": metadata.json is not a JSON object; re-export the model "
                                         "with python python/export.py");
  return root;
}

NetworkModels network_models(const Reader& reader) {
  NetworkModels models;
  models.any_size = reader.flag("any_size");
  const Json* object = reader.get("network_models", false);
  if (object == nullptr) return models;
  if (!object->is_object()) reader.fail("\"network_models\" is not an object");
  for (const auto& [key, value] : object->items()) {
    int height = 0, width = 0;
    char rest = 0;
    if (std::sscanf(key.c_str(), "%dx%d%c", &height, &width, &rest) != 2 || height < 1 || width < 1)
      reader.fail("\"network_models\" has the key \"" + key + "\", not a size HxW");
    if (!value.is_string() || value.get<std::string>().empty())
      reader.fail("\"network_models\".\"" + key + "\" is not a model name");
    models.sized.push_back({cv::Size(width, height), value.get<std::string>()});
  }
  return models;
}

}  // namespace

NetworkModels parse_network_models(const std::string& json, const std::string& source) {
  const Json root = parse_root(json, source);
  return network_models(Reader(root, source));
}

Metadata parse_metadata(const std::string& json, const std::string& source) {
  const Json root = parse_root(json, source);
  const Reader reader(root, source);

  Metadata meta;
  meta.json = json;
  meta.format = reader.text("format", true);
  if (meta.format != "emaseg.torchscript" && meta.format != "emaseg.aoti")
    reader.fail("has format \"" + meta.format +
                "\", expected \"emaseg.torchscript\" (.pt) or \"emaseg.aoti\" (.pt2)");
  meta.format_version = reader.integer("format_version", true);
  const bool package = meta.format == "emaseg.aoti";
  const int version = package ? kPackageFormatVersion : kFormatVersion;
  if (meta.format_version != version)
    reader.fail("has format_version " + std::to_string(meta.format_version) + " but this runtime reads " +
                    (package ? ".pt2 packages of version " : "version ") + std::to_string(version),
                meta.format_version > version
                    ? "it was written by a newer ema-seg: update this runtime"
                    : "re-export the model with python python/export.py");

  meta.num_classes = reader.integer("num_classes", true);
  if (meta.num_classes < 1) reader.fail("has num_classes < 1");

  const Json* names = reader.get("class_names", true);
  if (!names->is_array() || names->size() != std::size_t(meta.num_classes))
    reader.fail("\"class_names\" is not a list of num_classes names");
  for (const Json& name : *names) {
    if (!name.is_string()) reader.fail("\"class_names\" holds a non-string");
    meta.class_names.push_back(name.get<std::string>());
  }

  const Json* palette = reader.get("palette", true);
  if (!palette->is_array() || palette->size() != std::size_t(meta.num_classes))
    reader.fail("\"palette\" is not a list of num_classes [R, G, B] colours");
  for (const Json& colour : *palette) {
    const auto rgb = reader.numbers(&colour, "a \"palette\" colour", 3);
    std::array<std::uint8_t, 3> entry{};
    for (int c = 0; c < 3; ++c) {
      if (rgb[c] < 0 || rgb[c] > 255 || rgb[c] != std::floor(rgb[c]))
        reader.fail("\"palette\" holds a value outside 0..255");
      entry[c] = static_cast<std::uint8_t>(rgb[c]);
    }
    meta.palette.push_back(entry);
  }

  // The rest describes what happens inside the model; informative, so optional here.
  meta.config_name = reader.text("config_name");
  const auto mean = reader.numbers(reader.get("mean", false), "\"mean\"", 3);
  const auto stddev = reader.numbers(reader.get("std", false), "\"std\"", 3);
  for (std::size_t c = 0; c < mean.size(); ++c) meta.mean[c] = mean[c];
  for (std::size_t c = 0; c < stddev.size(); ++c) meta.stddev[c] = stddev[c];
  meta.mode = reader.text("mode");
  if (const Json* resize = reader.get("resize", false); resize != nullptr) {
    if (!resize->is_object()) reader.fail("\"resize\" is not an object");
    const Reader sub(*resize, source);
    meta.resize_type = sub.text("type", true);
    for (const char* key : {"scale", "size", "short_side"}) {
      const Json* value = member(*resize, key);
      if (value == nullptr) continue;
      if (value->is_number()) {
        meta.resize.push_back(sub.integer(*value, std::string("resize.") + key));
      } else {
        for (double v : sub.numbers(value, std::string("resize.") + key, 0))
          meta.resize.push_back(static_cast<int>(v));
      }
    }
  }
  const Json* slide = reader.get("slide", false);
  if (slide != nullptr && !slide->is_object()) reader.fail("\"slide\" is not an object");
  meta.slide_crop = pair_of(reader, slide, "crop_size");
  meta.slide_stride = pair_of(reader, slide, "stride");
  meta.flip = reader.flag("flip");
  meta.align_corners = reader.flag("align_corners");
  meta.dtype = reader.text("dtype");
  meta.label_dtype = reader.text("label_dtype");
  meta.checkpoint_sha256 = reader.text("checkpoint_sha256");
  meta.torch_version = reader.text("torch_version");
  meta.emaseg_version = reader.text("emaseg_version");
  if (package) {
    const NetworkModels models = network_models(reader);
    meta.any_size = models.any_size;
    for (const NetworkModel& model : models.sized) meta.network_sizes.push_back(model.size);
  }
  if ((meta.resize_type == "scale" && meta.resize.size() != 2) ||
      (meta.resize_type == "size" && meta.resize.size() != 2) ||
      (meta.resize_type == "short_side" && meta.resize.size() != 1))
    reader.fail("\"resize\" does not hold the numbers its type needs");
  return meta;
}

}  // namespace emaseg::detail
