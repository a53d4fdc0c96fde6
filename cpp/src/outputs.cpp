// RunOutputs: one output side for the CLI and the bindings, so every guard exists once.
#include "emaseg/outputs.h"

#include "latency.h"
#include "output_files.h"
#include "yuv_overlay.h"

#include <opencv2/imgcodecs.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace emaseg {
namespace {

namespace fs = std::filesystem;

using FileId = std::pair<dev_t, ino_t>;

std::optional<FileId> file_id(const std::string& path) {  // follows symlinks
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  return FileId{info.st_dev, info.st_ino};
}

Error output_error(const std::string& message) { return Error(Error::Kind::kOutput, message); }

void make_folder(const std::string& folder, const char* what) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec || !fs::is_directory(folder))
    throw output_error(std::string("cannot create ") + what + " '" + folder + "'" +
                       (ec ? ": " + ec.message() : ""));
}

// Label maps as PNG: 8-bit for up to 256 classes, else 16-bit.
cv::Mat mask_image(const cv::Mat& labels) {
  if (labels.depth() == CV_8U) return labels;
  cv::Mat wide;
  labels.convertTo(wide, CV_16U);
  return wide;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Output stem of each input image: its stem, or stem_ext where stems collide ("shot.png" and
// "shot.jpg" -> "shot_png", "shot_jpg"), or with the input's position where even that collides.
std::map<std::string, std::string> output_stems(const std::vector<std::string>& files,
                                                std::vector<std::string>& notes) {
  std::map<std::string, int> uses;
  for (const auto& file : files) ++uses[fs::path(file).stem().string()];
  std::map<std::string, std::string> stems;
  std::map<std::string, int> taken;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const fs::path path(files[i]);
    std::string stem = path.stem().string();
    if (uses[stem] > 1) {
      const std::string ext = lower(path.extension().string());
      stem += "_" + (ext.empty() ? std::string("noext") : ext.substr(1));
      notes.push_back("'" + files[i] + "' shares its stem with another image; its outputs are "
                      "named '" + stem + "'");
    }
    if (taken[stem]++ > 0) stem += "_" + std::to_string(i);
    stems[files[i]] = stem;
  }
  return stems;
}

}  // namespace

struct RunOutputs::Impl {
  const Segmenter& segmenter;
  OutputOptions options;
  std::set<FileId> inputs;
  std::map<std::string, std::string> stems;  // input image -> output stem
  std::unique_ptr<VideoOutput> video;
  std::string fourcc;  // the video's
  VideoColour colour;  // the source's, for overlays made on its planes
  cv::Size video_size;
  detail::LatencyRecorder overlay_ms, encode_ms;
  std::vector<std::string> notes;

  Impl(const Segmenter& s, const OutputOptions& o) : segmenter(s), options(o) {}

  // The last line of defence, at every write: the file about to be replaced is no input.
  void guard(const std::string& path) const {
    const auto id = file_id(path);
    if (id && inputs.count(*id))
      throw output_error("refusing to write '" + path + "': it is an input file");
  }

  std::string stem_of(const FrameResult& r) const {
    const auto it = stems.find(r.name);
    return it != stems.end() ? it->second : fs::path(r.name).stem().string();
  }

  std::string mask_path(const FrameResult& r) const {
    if (!r.name.empty()) return (fs::path(options.mask_dir) / (stem_of(r) + ".png")).string();
    char name[32];
    std::snprintf(name, sizeof name, "frame_%06lld.png", r.index);
    return (fs::path(options.mask_dir) / name).string();
  }

  std::string overlay_path(const FrameResult& r) const {
    return (fs::path(options.overlay_dir) / (stem_of(r) + "_overlay.png")).string();
  }
};

RunOutputs::RunOutputs(const Segmenter& segmenter, const FrameSource& source,
                       const OutputOptions& options)
    : impl_(std::make_unique<Impl>(segmenter, options)) {
  Impl& m = *impl_;
  const std::vector<std::string> files = source.files();
  for (const auto& file : files)
    if (const auto id = file_id(file)) m.inputs.insert(*id);
  if (source.images()) m.stems = output_stems(files, m.notes);

  // Every planned name is checked before anything is created.
  const auto refuse_input = [&](const std::string& path, const char* what) {
    if (const auto id = file_id(path); id && m.inputs.count(*id))
      throw output_error(std::string(what) + " '" + path + "' is " +
                         (source.images() ? "an input image" : "the input video") +
                         "; choose another name");
  };
  if (!options.video.empty()) refuse_input(options.video, "output");
  if (!options.overlay_file.empty()) {
    refuse_input(options.overlay_file, "output");
    if (!cv::haveImageWriter(options.overlay_file))
      throw output_error("cannot write '" + options.overlay_file +
                         "': OpenCV cannot write images with that extension");
  }
  for (const auto& file : files) {
    FrameResult r;
    r.name = file;
    if (!options.mask_dir.empty()) refuse_input(m.mask_path(r), "mask");
    if (!options.overlay_dir.empty()) refuse_input(m.overlay_path(r), "overlay");
  }

  if (!options.mask_dir.empty()) make_folder(options.mask_dir, "mask folder");
  if (!options.overlay_dir.empty()) make_folder(options.overlay_dir, "output folder");
  if (!options.video.empty()) {
    const double fps = source.fps() > 0 ? source.fps() : options.default_fps;
    m.fourcc = options.fourcc;
    m.colour = source.colour();
    m.video_size = source.frame_size();
    const auto video_options = [&](const std::string& fourcc) {
      if (fourcc != "mp4v" && fourcc != "avc1")  // as the fourcc constructor: a codec we cannot write
        throw output_error("cannot write video '" + options.video + "': no encoder for fourcc '" + fourcc +
                           "' (avc1: H.264, mp4v: MPEG-4 Part 2)");
      VideoOutputOptions v;
      v.codec = fourcc == "mp4v" ? "mp4v" : "h264";
      v.preset = options.preset;
      v.crf = options.crf;
      v.threads = options.encoder_threads;
      v.colour = m.colour;
      return v;
    };
    try {
      m.video = std::make_unique<VideoOutput>(options.video, fps, source.frame_size(), video_options(m.fourcc));
    } catch (const Error& e) {
      if (e.kind() != Error::Kind::kOutput || options.fallback_fourcc.empty()) throw;
      m.fourcc = options.fallback_fourcc;  // e.g. an FFmpeg built without libx264
      m.video = std::make_unique<VideoOutput>(options.video, fps, source.frame_size(), video_options(m.fourcc));
      m.notes.push_back("this FFmpeg cannot encode fourcc '" + options.fourcc + "'; '" + options.video +
                        "' is written as '" + m.fourcc + "' (browsers may not play it)");
    }
    const cv::Size size = source.frame_size();
    if (size.width % 2 != 0 || size.height % 2 != 0)
      m.notes.push_back("'" + options.video + "' is " + std::to_string(size.width / 2 * 2) + "x" +
                        std::to_string(size.height / 2 * 2) + ", not the input's " + std::to_string(size.width) +
                        "x" + std::to_string(size.height) +
                        ": H.264 and MPEG-4 video store even sizes only (masks and image overlays keep the size)");
  }
}

std::string RunOutputs::fourcc() const { return impl_->video ? impl_->fourcc : std::string(); }

RunOutputs::~RunOutputs() = default;

bool RunOutputs::needs_overlay() const {
  return impl_->video || !impl_->options.overlay_file.empty() || !impl_->options.overlay_dir.empty();
}

void RunOutputs::write(const FrameResult& r, const cv::Mat& overlay) {
  Impl& m = *impl_;
  cv::Mat shown = overlay;
  const bool images = !m.options.overlay_file.empty() || !m.options.overlay_dir.empty();
  const bool planes = m.video && shown.empty() && !images && !r.i420.empty() && r.frame.size() == r.labels.size() &&
                      r.i420.cols == r.frame.cols && r.frame.size() == m.video_size;
  double t0 = detail::thread_cpu_ms();
  if (planes) {  // the decoder's own planes in, the encoder's planes out: no conversion at all
    const cv::Mat blended =
        detail::overlay_i420(r.i420, r.labels, m.segmenter.metadata().palette, m.options.alpha, m.colour);
    m.overlay_ms.add(detail::thread_cpu_ms() - t0);
    t0 = detail::thread_cpu_ms();
    m.video->write_i420(blended);
    m.encode_ms.add(detail::thread_cpu_ms() - t0);
  } else {
    if (shown.empty() && needs_overlay()) {
      shown = m.segmenter.overlay(r.frame, r.labels, m.options.alpha);
      m.overlay_ms.add(detail::thread_cpu_ms() - t0);
    }
    if (m.video) {
      t0 = detail::thread_cpu_ms();
      m.video->write(shown);
      m.encode_ms.add(detail::thread_cpu_ms() - t0);
    }
  }
  const auto write_image = [&m](const std::string& path, const cv::Mat& image) {
    m.guard(path);
    detail::write_image_atomic(path, image);
  };
  if (!m.options.overlay_file.empty()) write_image(m.options.overlay_file, shown);
  if (!m.options.overlay_dir.empty()) write_image(m.overlay_path(r), shown);
  if (!m.options.mask_dir.empty() && r.inferred) write_image(m.mask_path(r), mask_image(r.labels));
}

void RunOutputs::finish() {
  if (impl_->video) impl_->video->close();
}

LatencySummary RunOutputs::overlay_ms() const { return impl_->overlay_ms.summary(); }
LatencySummary RunOutputs::encode_ms() const { return impl_->encode_ms.summary(); }

std::string RunOutputs::finish_partial() {
  return impl_->video ? impl_->video->close_partial() : std::string();
}

std::vector<std::string> RunOutputs::temp_files() const {
  if (!impl_->video || impl_->video->temp_path().empty()) return {};
  return {impl_->video->temp_path()};
}

const std::vector<std::string>& RunOutputs::notes() const { return impl_->notes; }

}  // namespace emaseg
