// metadata.json checks: a valid file parses into every field; each way a file can be wrong
// gives Error(kModel) whose message names the problem.
#include "check.h"
#include "metadata.h"

#include <string>

using emaseg::Error;
using emaseg::detail::parse_metadata;

namespace {

// What python/export.py writes (docs/model_file_format.md), for a two-class model.
std::string valid(const std::string& replace_key = "", const std::string& with = "") {
  std::string json = R"({
    "format": "emaseg.torchscript", "format_version": 1, "config_name": "demo",
    "num_classes": 2, "class_names": ["road", "caf\u00e9"], "palette": [[128, 64, 128], [0, 0, 255]],
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "mode": "slide",
    "resize": {"type": "scale", "scale": [2048, 512]},
    "slide": {"crop_size": [512, 512], "stride": [341, 341]},
    "flip": true, "align_corners": false, "dtype": "float32", "label_dtype": "uint8",
    "checkpoint_sha256": "abc", "torch_version": "2.13.0", "emaseg_version": "0.1.0"})";
  if (!replace_key.empty()) {
    // Replace `"key": <value>` up to the next top-level comma by `with` (empty: drop the key).
    const auto start = json.find("\"" + replace_key + "\":");
    auto end = start;
    int depth = 0;
    for (; end < json.size(); ++end) {
      if (json[end] == '[' || json[end] == '{') ++depth;
      if (json[end] == ']' || json[end] == '}') --depth;
      if (depth == 0 && json[end] == ',') break;
    }
    json.replace(start, end + 1 - start, with.empty() ? "" : with + ",");
  }
  return json;
}

auto model_error(const std::string& fragment) {
  return [fragment](const Error& e) {
    return e.kind() == Error::Kind::kModel && std::string(e.what()).find(fragment) != std::string::npos;
  };
}

}  // namespace

TEST(parses_every_field) {
  const emaseg::Metadata m = parse_metadata(valid(), "'x.pt'");
  CHECK_EQ(m.format, std::string("emaseg.torchscript"));
  CHECK_EQ(m.format_version, 1);
  CHECK_EQ(m.config_name, std::string("demo"));
  CHECK_EQ(m.num_classes, 2);
  CHECK_EQ(m.class_names[1], std::string("caf\xc3\xa9"));
  CHECK_EQ(int(m.palette[0][0]), 128);
  CHECK_EQ(int(m.palette[1][2]), 255);
  CHECK_EQ(m.mean[2], 0.406);
  CHECK_EQ(m.stddev[0], 0.229);
  CHECK_EQ(m.mode, std::string("slide"));
  CHECK_EQ(m.resize_type, std::string("scale"));
  CHECK_EQ(m.resize.size(), 2u);
  CHECK_EQ(m.resize[0], 2048);
  CHECK_EQ(m.slide_crop[1], 512);
  CHECK_EQ(m.slide_stride[0], 341);
  CHECK(m.flip);
  CHECK(!m.align_corners);
  CHECK_EQ(m.dtype, std::string("float32"));
  CHECK_EQ(m.label_dtype, std::string("uint8"));
  CHECK_EQ(m.checkpoint_sha256, std::string("abc"));
  CHECK_EQ(m.torch_version, std::string("2.13.0"));
  CHECK_EQ(m.emaseg_version, std::string("0.1.0"));
  CHECK(m.json.find("\"demo\"") != std::string::npos);
}

TEST(informative_keys_are_optional) {
  const emaseg::Metadata m = parse_metadata(valid("slide", "\"x\": 0"), "'x.pt'");
  CHECK_EQ(m.slide_crop[0], 0);
  const emaseg::Metadata n = parse_metadata(valid("resize", R"("resize": {"type": "short_side", "short_side": 512})"), "'x.pt'");
  CHECK_EQ(n.resize.size(), 1u);
  CHECK_EQ(n.resize[0], 512);
}

// A version-2 .pt2 package's metadata: `extra` holds its network models.
emaseg::Metadata package(const std::string& extra) {
  std::string json = valid("format", R"("format": "emaseg.aoti", "format_version": 2, )" + extra);
  json.erase(json.find("\"format_version\": 1,"), 20);
  json.replace(json.find("[2048, 512]"), 11, "[512, 256]");  // the demo's test scale
  return parse_metadata(json, "'x.pt2'");
}

TEST(reads_the_network_models_of_a_package) {
  const emaseg::Metadata m = package(R"("any_size": true, "network_models": {"256x455": "net_256x455", "455x256": "net_455x256"})");
  CHECK_EQ(m.network_sizes.size(), std::size_t(2));
  CHECK(m.any_size);
  CHECK(m.network_sizes[0] == cv::Size(455, 256) || m.network_sizes[1] == cv::Size(455, 256));
  CHECK(m.compiled_for(cv::Size(1280, 720)) && m.compiled_for(cv::Size(1920, 1080)));  // every 16:9 frame
  CHECK(m.compiled_for(cv::Size(1080, 1920)));                                         // portrait 9:16
  CHECK(!m.compiled_for(cv::Size(640, 480)) && m.takes(cv::Size(640, 480)));           // 4:3: any-size model
  const emaseg::Metadata fixed = package(R"("any_size": false, "network_models": {"256x341": "net_256x341"})");
  CHECK(fixed.takes(cv::Size(640, 480)) && fixed.takes(cv::Size(1440, 1080)) && !fixed.takes(cv::Size(1280, 720)));
  const emaseg::Metadata pt = parse_metadata(valid(), "'x.pt'");
  CHECK(pt.takes(cv::Size(33, 17)) && pt.compiled_for(cv::Size(33, 17)));  // a .pt takes any size
  using emaseg::detail::parse_network_models;
  CHECK(parse_network_models(R"({"format": "emaseg.aoti"})", "'x.pt2'").sized.empty());
  CHECK_THROWS_IF(parse_network_models(R"({"network_models": {"big": "net_big"}})", "'x.pt2'"), Error,
                  model_error("has the key \"big\", not a size HxW"));
  CHECK_THROWS_IF(parse_network_models(R"({"network_models": {"8x8": 3}})", "'x.pt2'"), Error,
                  model_error("\"network_models\".\"8x8\" is not a model name"));
  CHECK_THROWS_IF(parse_network_models(R"({"network_models": []})", "'x.pt2'"), Error,
                  model_error("\"network_models\" is not an object"));
  CHECK_THROWS_IF(parse_network_models(R"({"any_size": 1})", "'x.pt2'"), Error,
                  model_error("\"any_size\" is not true or false"));
}

TEST(network_size_follows_the_resize) {  // the same arithmetic as python/emaseg/inference.py
  const emaseg::Metadata scale = package(R"("any_size": true, "network_models": {})");  // scale [512, 256]
  CHECK(scale.network_size(cv::Size(2048, 1024)) == cv::Size(512, 256));
  CHECK(scale.network_size(cv::Size(1000, 1000)) == cv::Size(256, 256));
  CHECK(scale.network_size(cv::Size(640, 480)) == cv::Size(341, 256));
  CHECK(scale.network_size(cv::Size(1080, 1920)) == cv::Size(256, 455));
  const emaseg::Metadata size = parse_metadata(valid("resize", R"("resize": {"type": "size", "size": [96, 160]})"), "'x.pt'");
  CHECK(size.network_size(cv::Size(33, 17)) == cv::Size(160, 96));
  const emaseg::Metadata none = parse_metadata(valid("resize", R"("resize": {"type": "none"})"), "'x.pt'");
  CHECK(none.network_size(cv::Size(33, 17)) == cv::Size(33, 17));
  const emaseg::Metadata side = parse_metadata(valid("resize", R"("resize": {"type": "short_side", "short_side": 100})"), "'x.pt'");
  CHECK(side.network_size(cv::Size(300, 200)) == cv::Size(150, 100));
  CHECK_THROWS_IF(parse_metadata(valid("resize", R"("resize": {"type": "scale", "scale": [512]})"), "'x.pt'"),
                  Error, model_error("\"resize\" does not hold the numbers its type needs"));
}

TEST(refuses_foreign_or_broken_metadata) {
  CHECK_THROWS_IF(parse_metadata("not json", "'x.pt'"), Error, model_error("not valid JSON"));
  CHECK_THROWS_IF(parse_metadata(valid() + "}", "'x.pt'"), Error, model_error("not valid JSON"));
  CHECK_THROWS_IF(parse_metadata("{\"a\": 1,}", "'x.pt'"), Error, model_error("not valid JSON"));
  CHECK_THROWS_IF(parse_metadata("[1]", "'x.pt'"), Error, model_error("not a JSON object"));
  CHECK_THROWS_IF(parse_metadata(valid("format", R"("format": "other")"), "'x.pt'"), Error,
                  model_error("expected \"emaseg.torchscript\""));
  CHECK_THROWS_IF(parse_metadata(valid("format"), "'x.pt'"), Error, model_error("lacks the key \"format\""));
  CHECK_THROWS_IF(parse_metadata(valid("num_classes", R"("num_classes": 2.5)"), "'x.pt'"), Error,
                  model_error("\"num_classes\" is not an integer"));
  CHECK_THROWS_IF(parse_metadata(valid("class_names", R"("class_names": ["road"])"), "'x.pt'"),
                  Error, model_error("class_names"));
  CHECK_THROWS_IF(parse_metadata(valid("palette", R"("palette": [[0, 0, 0], [0, 0, 256]])"), "'x.pt'"),
                  Error, model_error("outside 0..255"));
  CHECK_THROWS_IF(parse_metadata(valid("palette", R"("palette": [[0, 0], [0, 0, 1]])"), "'x.pt'"),
                  Error, model_error("palette"));
  CHECK_THROWS_IF(parse_metadata(valid("flip", R"("flip": "yes")"), "'x.pt'"), Error,
                  model_error("\"flip\" is not true or false"));
}

TEST(format_version_mismatch_says_what_to_do) {
  CHECK_THROWS_IF(parse_metadata(valid("format_version", R"("format_version": 2)"), "'x.pt'"), Error,
                  model_error("newer ema-seg: update this runtime"));
  CHECK_THROWS_IF(parse_metadata(valid("format_version", R"("format_version": 0)"), "'x.pt'"), Error,
                  model_error("re-export the model"));
  // The message names the model so a user with several files knows which one.
  CHECK_THROWS_IF(parse_metadata(valid("format_version", R"("format_version": 2)"), "'models/a.pt'"),
                  Error, model_error("models/a.pt"));
  // A .pt2 of version 1 held frame-size models: the runtime says to export it again.
  CHECK_THROWS_IF(parse_metadata(valid("format", R"("format": "emaseg.aoti")"), "'old.pt2'"), Error,
                  model_error("reads .pt2 packages of version 2; re-export the model"));
}
