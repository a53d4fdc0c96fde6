// The output side: atomic files, VideoOutput's commit/discard, RunOutputs' guards and names,
// per-image errors in the pipeline. Arguments: MODEL.pt SCRATCH_DIR
#include "check.h"
#include "test_segmenter.h"

#include "output_files.h"

#include <emaseg/outputs.h>
#include <emaseg/pipeline.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

using check::segmenter;
using emaseg::Error;

namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(check::test_arg(1)) / ("outputs_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

cv::Mat frame(int shade) { return cv::Mat(24, 32, CV_8UC3, cv::Scalar(shade, 90, 200)); }

long long frames_in(const fs::path& video) {
  cv::VideoCapture capture(video.string(), cv::CAP_FFMPEG);
  long long count = 0;
  cv::Mat f;
  while (capture.isOpened() && capture.read(f)) ++count;
  return count;
}

bool output_error(const Error& e) { return e.kind() == Error::Kind::kOutput; }

}  // namespace

TEST(atomic_file_appears_whole_with_the_usual_mode) {
  const fs::path dir = scratch("atomic");
  const std::string path = (dir / "data.bin").string();
  const mode_t old_mask = ::umask(022);
  emaseg::detail::write_file_atomic(path, {1, 2, 3});
  ::umask(old_mask);
  CHECK_EQ(fs::file_size(path), 3u);
  struct stat info {};
  CHECK(::stat(path.c_str(), &info) == 0);
  CHECK_EQ(info.st_mode & 0777, 0644u);  // not mkstemp's 0600
  CHECK((names_in(dir) == std::set<std::string>{"data.bin"}));
  CHECK_THROWS_IF(emaseg::detail::write_file_atomic((dir / "no" / "x.bin").string(), {1}), Error,
                  [](const Error& e) {
                    return output_error(e) && std::string(e.what()).find("No such file or directory") != std::string::npos;
                  });
  CHECK_THROWS_IF(emaseg::detail::write_image_atomic((dir / "x.unknown").string(), frame(1)), Error,
                  output_error);
  CHECK((names_in(dir) == std::set<std::string>{"data.bin"}));  // no temp file left behind
}

TEST(input_spellings_name_the_same_file) {
  using emaseg::detail::local_file;
  CHECK_EQ(local_file("/a/b.mp4"), std::string("/a/b.mp4"));
  CHECK_EQ(local_file("file:///a/b.mp4"), std::string("///a/b.mp4"));  // as FFmpeg reads it
  CHECK_EQ(local_file("file:b.mp4"), std::string("b.mp4"));
  CHECK(local_file("rtsp://camera/stream").empty());
  CHECK_EQ(emaseg::detail::partial_name("/x/out.mp4"), std::string("/x/out.partial.mp4"));
}

TEST(video_appears_only_when_closed) {
  const fs::path dir = scratch("video");
  const fs::path path = dir / "out.mp4";
  {
    emaseg::VideoOutput video(path.string(), 10.0, {32, 24});
    for (int i = 0; i < 5; ++i) video.write(frame(i * 40));
    CHECK(!fs::exists(path));               // still under its temporary name
    CHECK(fs::exists(video.temp_path()));
    CHECK_EQ(names_in(dir).size(), 1u);
  }  // destroyed without close(): a failed run
  CHECK(names_in(dir).empty());

  emaseg::VideoOutput video(path.string(), 10.0, {32, 24});
  for (int i = 0; i < 5; ++i) video.write(frame(i * 40));
  video.close();
  CHECK((names_in(dir) == std::set<std::string>{"out.mp4"}));
  CHECK_EQ(frames_in(path), 5);

  emaseg::VideoOutput partial((dir / "cut.mp4").string(), 10.0, {32, 24});
  partial.write(frame(7));
  CHECK_EQ(partial.close_partial(), (dir / "cut.partial.mp4").string());
  CHECK((names_in(dir) == std::set<std::string>{"out.mp4", "cut.partial.mp4"}));

  emaseg::VideoOutput empty((dir / "empty.mp4").string(), 10.0, {32, 24});
  empty.close();  // no frame: no file
  CHECK((names_in(dir) == std::set<std::string>{"out.mp4", "cut.partial.mp4"}));
}

TEST(run_outputs_refuse_to_overwrite_inputs) {
  const fs::path dir = scratch("guard");
  CHECK(cv::imwrite((dir / "a.png").string(), frame(1)));
  CHECK(cv::imwrite((dir / "b.png").string(), frame(2)));
  const auto source = emaseg::open_images(dir.string());
  emaseg::OutputOptions options;
  options.mask_dir = dir.string();  // a.png's mask would be a.png
  CHECK_THROWS_IF(emaseg::RunOutputs(segmenter(), *source, options), Error, [](const Error& e) {
    return output_error(e) && std::string(e.what()).find("is an input image") != std::string::npos;
  });
  options.mask_dir.clear();
  options.overlay_dir = dir.string();  // a_overlay.png, b_overlay.png: no collision
  emaseg::RunOutputs outputs(segmenter(), *source, options);
  CHECK(outputs.notes().empty());
}

TEST(run_outputs_give_colliding_stems_distinct_names) {
  const fs::path dir = scratch("stems");
  CHECK(cv::imwrite((dir / "shot.png").string(), frame(1)));
  CHECK(cv::imwrite((dir / "shot.jpg").string(), frame(2)));
  CHECK(cv::imwrite((dir / "other.png").string(), frame(3)));
  const fs::path masks = scratch("stems_masks");
  const auto source = emaseg::open_images(dir.string());
  emaseg::OutputOptions options;
  options.mask_dir = masks.string();
  emaseg::RunOutputs outputs(segmenter(), *source, options);
  CHECK_EQ(outputs.notes().size(), 2u);
  emaseg::run_pipeline(segmenter(), *source, [&](const emaseg::FrameResult& r) {
    outputs.write(r);
    return true;
  });
  outputs.finish();
  CHECK((names_in(masks) == std::set<std::string>{"other.png", "shot_jpg.png", "shot_png.png"}));
}

TEST(bad_images_of_a_batch_are_skipped_when_asked) {
  const fs::path dir = scratch("batch");
  CHECK(cv::imwrite((dir / "a.png").string(), frame(1)));
  CHECK(cv::imwrite((dir / "b.png").string(), cv::Mat(2, 2, CV_8UC3, cv::Scalar(0))));  // < 8x8
  CHECK(cv::imwrite((dir / "c.png").string(), frame(3)));
  std::vector<std::string> reported;
  emaseg::PipelineOptions options;
  options.on_frame_error = [&](long long, const std::string& name, const std::string& message) {
    reported.push_back(fs::path(name).filename().string() + ": " + message);
  };
  const auto source = emaseg::open_images(dir.string());
  std::vector<std::string> done;
  const auto stats = emaseg::run_pipeline(segmenter(), *source, [&](const emaseg::FrameResult& r) {
    done.push_back(fs::path(r.name).filename().string());
    return true;
  }, options);
  CHECK_EQ(stats.failed, 1);
  CHECK((done == std::vector<std::string>{"a.png", "c.png"}));
  CHECK_EQ(reported.size(), 1u);
  CHECK(reported[0].find("b.png: ") == 0 && reported[0].find("at least 8x8") != std::string::npos);

  // Without the callback the same image ends the run, as before.
  const auto again = emaseg::open_images(dir.string());
  CHECK_THROWS_IF(emaseg::run_pipeline(segmenter(), *again, [](const emaseg::FrameResult&) { return true; }),
                  Error, [](const Error& e) { return e.kind() == Error::Kind::kArgument; });
}

TEST(threads_and_pixels_are_bounded) {
  emaseg::Options options;
  options.threads = emaseg::max_threads() + 1;
  const auto argument = [](const Error& e) { return e.kind() == Error::Kind::kArgument; };
  CHECK_THROWS_IF(emaseg::Segmenter(check::test_arg(0), options), Error, argument);
  options.threads = 1;
  options.max_pixels = 24 * 32;
  const emaseg::Segmenter limited(check::test_arg(0), options);
  CHECK(limited.segment(frame(1)).size() == cv::Size(32, 24));  // exactly the limit
  CHECK_THROWS_IF(limited.segment(cv::Mat(25, 32, CV_8UC3, cv::Scalar(0))), Error, argument);
}

TEST(odd_frame_sizes_say_the_video_is_smaller) {
  const fs::path dir = scratch("odd");
  fs::create_directories(dir / "in");
  for (int i = 0; i < 3; ++i)
    CHECK(cv::imwrite((dir / "in" / ("f" + std::to_string(i) + ".png")).string(),
                      cv::Mat(49, 65, CV_8UC3, cv::Scalar(i * 40, 90, 200))));
  const auto source = emaseg::open_images((dir / "in").string());
  emaseg::OutputOptions options;
  options.video = (dir / "odd.mp4").string();
  emaseg::RunOutputs outputs(segmenter(), *source, options);
  emaseg::run_pipeline(segmenter(), *source, [&](const emaseg::FrameResult& r) {
    outputs.write(r);
    return true;
  });
  outputs.finish();
  CHECK_EQ(outputs.notes().size(), 1u);
  CHECK(outputs.notes()[0].find("is 64x48, not the input's 65x49") != std::string::npos);
  cv::VideoCapture capture((dir / "odd.mp4").string());
  cv::Mat first;
  CHECK(capture.read(first));
  CHECK(first.size() == cv::Size(64, 48));  // what the note says
}

TEST(run_outputs_write_h264_or_fall_back_with_a_note) {
  const fs::path dir = scratch("codec");
  {
    emaseg::VideoOutput input((dir / "in.mp4").string(), 10.0, {64, 48});
    for (int i = 0; i < 3; ++i) input.write(frame(i * 50));
    input.close();
  }
  const auto fourcc_of = [](const fs::path& path) {
    cv::VideoCapture capture(path.string());
    const int code = static_cast<int>(capture.get(cv::CAP_PROP_FOURCC));
    std::string text(4, ' ');
    for (int i = 0; i < 4; ++i) text[i] = static_cast<char>((code >> (8 * i)) & 0xff);
    return text;
  };
  const auto run = [&](const emaseg::OutputOptions& options) {
    const auto source = emaseg::open_video((dir / "in.mp4").string());
    emaseg::RunOutputs outputs(segmenter(), *source, options);
    emaseg::run_pipeline(segmenter(), *source, [&](const emaseg::FrameResult& r) {
      outputs.write(r);
      return true;
    });
    outputs.finish();
    return std::make_pair(outputs.fourcc(), outputs.notes());
  };
  emaseg::OutputOptions options;
  options.video = (dir / "h264.mp4").string();
  options.fourcc = "avc1";  // Debian's OpenCV encodes H.264 through libx264
  const auto [h264, h264_notes] = run(options);
  CHECK(h264 == "avc1" && h264_notes.empty());
  CHECK(fourcc_of(dir / "h264.mp4") == "avc1" || fourcc_of(dir / "h264.mp4") == "h264");
  CHECK_EQ(frames_in(dir / "h264.mp4"), 3);

  options.video = (dir / "fallback.mp4").string();
  options.fourcc = "zzzz";  // no such encoder: written with the fallback, and said so
  options.fallback_fourcc = "mp4v";
  const auto [fallback, notes] = run(options);
  CHECK(fallback == "mp4v" && notes.size() == 1u);
  CHECK(notes[0].find("cannot encode fourcc 'zzzz'") != std::string::npos);
  CHECK_EQ(frames_in(dir / "fallback.mp4"), 3);

  options.video = (dir / "refused.mp4").string();
  options.fallback_fourcc.clear();  // asked for explicitly: an error, and no file
  CHECK_THROWS_IF(run(options), Error, output_error);
  CHECK(!fs::exists(dir / "refused.mp4"));
}
