// The streams of a multi-camera run: a sources file, the names of its inputs, opening one.
#include "emaseg/multi_pipeline.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>

namespace emaseg {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCameraPrefix = "camera:";

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'; }

bool valid_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (char c : name)
    if (!name_char(c)) return false;
  return true;
}

bool is_url(const std::string& input) { return input.find("://") != std::string::npos; }

// "cam" for rtsp://host/cam?x=1 and /videos/cam.mp4; "camera_0" for camera:0.
std::string stem_of(const std::string& input) {
  std::string last = input.rfind(kCameraPrefix, 0) == 0 ? input : input.substr(input.find_last_of('/') + 1);
  last = last.substr(0, last.find_first_of("?#"));
  std::string stem = input.rfind(kCameraPrefix, 0) == 0 ? last : fs::path(last).stem().string();
  for (char& c : stem)
    if (!name_char(c)) c = '_';
  return valid_name(stem) ? stem : "stream";
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r") - begin + 1);
}

}  // namespace

std::vector<StreamSpec> name_streams(const std::vector<std::string>& inputs, std::vector<StreamSpec> named) {
  std::set<std::string> taken;
  for (const StreamSpec& spec : named) taken.insert(spec.name);
  for (const std::string& input : inputs) {
    const std::string stem = stem_of(input);
    std::string name = stem;
    for (int n = 2; taken.count(name) != 0; ++n) name = stem + "_" + std::to_string(n);
    taken.insert(name);
    named.push_back({name, input});
  }
  return named;
}

std::vector<StreamSpec> read_sources(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error(Error::Kind::kInput, "cannot read the sources file '" + path + "'");
  // Relative paths are relative to the sources file, so that it works from any folder.
  const fs::path folder = fs::path(path).parent_path();
  std::vector<StreamSpec> named;
  std::vector<std::pair<std::size_t, std::string>> bare;  // position among all, input
  std::vector<std::string> order;                          // inputs in file order
  std::set<std::string> names;
  std::string line;
  for (int number = 1; std::getline(file, line); ++number) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const std::string where = path + " line " + std::to_string(number) + ": ";
    std::string name, input = line;
    // NAME=INPUT when the part before the first '=' is not part of a path or URL.
    const auto equals = line.find('=');
    if (equals != std::string::npos && line.find_first_of("/:\\") > equals) {
      name = trim(line.substr(0, equals));
      input = trim(line.substr(equals + 1));
      if (!valid_name(name))
        throw Error(Error::Kind::kArgument, where + "the stream name '" + name +
                                                "' may hold only letters, digits, '.', '-' and '_'");
      if (!names.insert(name).second) throw Error(Error::Kind::kArgument, where + "the name '" + name + "' is used twice");
      if (input.empty()) throw Error(Error::Kind::kArgument, where + "'" + name + "=' names no input");
    }
    if (!is_url(input) && input.rfind(kCameraPrefix, 0) != 0 && fs::path(input).is_relative())
      input = (folder / input).string();
    if (name.empty()) bare.emplace_back(order.size(), input);
    else named.push_back({name, input});
    order.push_back(input);
  }
  if (order.empty()) throw Error(Error::Kind::kArgument, path + " lists no input");
  // Bare inputs are named after the explicit names are known, then everything is put back in
  // file order.
  std::vector<std::string> bare_inputs;
  for (const auto& item : bare) bare_inputs.push_back(item.second);
  std::vector<StreamSpec> all = name_streams(bare_inputs, named);
  std::vector<StreamSpec> ordered(order.size());
  std::size_t next_named = 0, next_bare = named.size();
  std::size_t b = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (b < bare.size() && bare[b].first == i) {
      ordered[i] = all[next_bare++];
      ++b;
    } else {
      ordered[i] = all[next_named++];
    }
  }
  return ordered;
}

std::unique_ptr<FrameSource> open_stream(const std::string& input, const VideoOptions& options) {
  if (input.rfind(kCameraPrefix, 0) == 0) {
    const std::string index = input.substr(std::string(kCameraPrefix).size());
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || index.size() > 4)
      throw Error(Error::Kind::kInput, "'" + input + "' is not a camera: use camera:N, N an index >= 0");
    return open_camera(std::stoi(index));
  }
  return open_video(input, options);
}

}  // namespace emaseg
