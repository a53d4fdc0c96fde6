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

TEST(reads_the_fixed_frame_size_of_a_package) {
  CHECK(parse_metadata(valid(), "'x.pt'").fixed_frame_size.empty());  // a .pt takes any size
  const emaseg::Metadata m = parse_metadata(
      valid("format", R"("format": "emaseg.aoti", "fixed_input": {"N": 1, "H": 1080, "W": 1920})"), "'x.pt2'");
  CHECK_EQ(m.fixed_frame_size.width, 1920);
  CHECK_EQ(m.fixed_frame_size.height, 1080);
  CHECK(parse_metadata(valid("format", R"("format": "emaseg.aoti", "fixed_input": {})"), "'x.pt2'")
            .fixed_frame_size.empty());
  CHECK_THROWS_IF(parse_metadata(valid("format", R"("format": "emaseg.aoti", "fixed_input": {"H": 1.5, "W": 2})"),
                                 "'x.pt2'"),
                  Error, model_error("fixed_input.H is not an integer"));
}

TEST(reads_each_fixed_input_dimension) {  // what the .pt2 backend checks every call against
  using emaseg::detail::parse_fixed_input;
  const auto all = parse_fixed_input(R"({"fixed_input": {"N": 1, "H": 1080, "W": 1920}})", "'x.pt2'");
  CHECK((all.batch == 1 && all.height == 1080 && all.width == 1920));
  const auto width_only = parse_fixed_input(R"({"fixed_input": {"W": 640}})", "'x.pt2'");
  CHECK((width_only.batch == 0 && width_only.height == 0 && width_only.width == 640));
  const auto any = parse_fixed_input(R"({"format": "emaseg.aoti"})", "'x.pt2'");
  CHECK((any.batch == 0 && any.height == 0 && any.width == 0));
  CHECK_THROWS_IF(parse_fixed_input(R"({"fixed_input": {"N": "one"}})", "'x.pt2'"), Error,
                  model_error("fixed_input.N is not an integer"));
  CHECK_THROWS_IF(parse_fixed_input("{", "'x.pt2'"), Error, model_error("not valid JSON"));
  // A package fixed in one dimension only has no single frame size to offer a caller.
  CHECK(parse_metadata(valid("format", R"("format": "emaseg.aoti", "fixed_input": {"W": 640})"), "'x.pt2'")
            .fixed_frame_size.empty());
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
}

TEST(reads_the_frame_models_of_a_package) {  // export.py --frame-sizes
  using emaseg::detail::parse_frame_models;
  const auto models = parse_frame_models(
      R"({"frame_models": {"1080x1920": "model_1080x1920", "720x1280": "model_720x1280"}})", "'x.pt2'");
  CHECK_EQ(models.size(), std::size_t(2));
  const auto m = parse_metadata(
      valid("format", R"("format": "emaseg.aoti", "fixed_input": {"N": 1, "H": 256, "W": 512},
            "frame_models": {"1080x1920": "model_1080x1920"})"), "'x.pt2'");
  CHECK_EQ(m.frame_sizes.size(), std::size_t(1));
  CHECK(m.frame_sizes[0] == cv::Size(1920, 1080));
  CHECK(m.takes(cv::Size(1920, 1080)) && m.takes(cv::Size(512, 256)) && !m.takes(cv::Size(1280, 720)));
  CHECK(parse_metadata(valid(), "'x.pt'").takes(cv::Size(33, 17)));  // a .pt takes any size
  CHECK(parse_frame_models(R"({"format": "emaseg.aoti"})", "'x.pt2'").empty());
  CHECK_THROWS_IF(parse_frame_models(R"({"frame_models": {"big": "model_big"}})", "'x.pt2'"), Error,
                  model_error("has the key \"big\", not a size HxW"));
  CHECK_THROWS_IF(parse_frame_models(R"({"frame_models": {"8x8": 3}})", "'x.pt2'"), Error,
                  model_error("\"frame_models\".\"8x8\" is not a model name"));
  CHECK_THROWS_IF(parse_frame_models(R"({"frame_models": []})", "'x.pt2'"), Error,
                  model_error("\"frame_models\" is not an object"));
}
