// The FFmpeg-native video path: open_video's BGR frames are byte for byte cv::VideoCapture's
// (the reference pipeline's input) on H.264, MPEG-4 Part 2 and MJPEG files, odd sizes and
// padded coded sizes included; the overlay blended on the I420 planes looks like overlay()'s
// BGR blend; I420 frames written by VideoOutput come back as written.
// The test files are made by apt's `ffmpeg` CLI (set-up installs it).
#include "check.h"
#include "yuv_overlay.h"

#include <emaseg/pipeline.h>

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

namespace {

namespace fs = std::filesystem;

fs::path scratch() {
  const fs::path dir = fs::path(check::test_arg(0)) / "video";
  fs::create_directories(dir);
  return dir;
}

// A moving test pattern with noise (so every codec has real work), made by ffmpeg.
fs::path make_video(const std::string& name, cv::Size size, const std::string& codec_args) {
  const fs::path file = scratch() / name;
  // testsrc2 makes even sizes only: crop to odd ones.
  const std::string command = "ffmpeg -v error -y -f lavfi -i testsrc2=size=" + std::to_string(size.width + 1) + "x" +
                              std::to_string(size.height + 1) + ":rate=25:duration=0.6 -vf noise=alls=20:allf=t,format=rgb24,crop=" +
                              std::to_string(size.width) + ":" + std::to_string(size.height) + ":0:0 " + codec_args +
                              " '" + file.string() + "'";
  if (std::system(command.c_str()) != 0) throw check::Failure("ffmpeg failed (apt-get install ffmpeg): " + command);
  return file;
}

std::vector<cv::Mat> opencv_frames(const fs::path& file) {
  cv::VideoCapture capture(file.string(), cv::CAP_FFMPEG);
  CHECK(capture.isOpened());
  std::vector<cv::Mat> frames;
  for (cv::Mat frame; capture.read(frame);) frames.push_back(frame.clone());
  return frames;
}

std::vector<cv::Mat> our_frames(const fs::path& file, std::vector<cv::Mat>* planes = nullptr) {
  const auto source = emaseg::open_video(file.string());
  std::vector<cv::Mat> frames;
  cv::Mat frame, i420;
  std::string name;
  for (;;) {
    const auto status = source->read(frame, i420, name);
    if (status == emaseg::FrameSource::Status::kEnd) break;
    CHECK(status == emaseg::FrameSource::Status::kFrame);
    frames.push_back(frame.clone());
    if (planes != nullptr) planes->push_back(i420.clone());
  }
  return frames;
}

void check_identical(const fs::path& file, cv::Size size) {
  const std::vector<cv::Mat> expected = opencv_frames(file), got = our_frames(file);
  CHECK_EQ(got.size(), expected.size());
  CHECK(expected.size() >= 10);
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].size() == size);
    CHECK(got[i].type() == CV_8UC3);
    if (cv::norm(got[i], expected[i], cv::NORM_INF) != 0)
      throw check::Failure(file.filename().string() + ": frame " + std::to_string(i) + " differs from cv::VideoCapture's");
  }
}

TEST(h264_frames_equal_opencv_at_a_padded_coded_size) {
  // 322x182: H.264 codes 336x192, OpenCV converts at the coded size; so must we.
  check_identical(make_video("h264.mp4", {322, 182}, "-c:v libx264 -pix_fmt yuv420p"), {322, 182});
}

TEST(h264_frames_equal_opencv_when_converted_in_place) {
  // 640x360: rows of 32-byte multiples, converted straight into the frame; codes 640x368.
  check_identical(make_video("h264_in_place.mp4", {640, 360}, "-c:v libx264 -pix_fmt yuv420p"), {640, 360});
}

TEST(h264_444_frames_equal_opencv_at_an_odd_size) {
  check_identical(make_video("h264_444.mkv", {321, 181}, "-c:v libx264 -pix_fmt yuv444p"), {321, 181});
}

TEST(mpeg4_frames_equal_opencv_at_an_odd_size) {
  check_identical(make_video("mpeg4.avi", {321, 181}, "-c:v mpeg4 -q:v 4"), {321, 181});
}

TEST(mjpeg_frames_equal_opencv_at_an_odd_size) {
  check_identical(make_video("mjpeg.avi", {319, 179}, "-c:v mjpeg -pix_fmt yuvj420p -q:v 3"), {319, 179});
}

TEST(i420_planes_only_for_limited_range_420_at_even_sizes) {
  std::vector<cv::Mat> planes;
  const auto frames = our_frames(make_video("planes.mp4", {322, 182}, "-c:v libx264 -pix_fmt yuv420p"), &planes);
  CHECK(!planes.empty());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    CHECK(planes[i].rows == 182 * 3 / 2 && planes[i].cols == 322);
    cv::Mat bgr;  // the planes are the frame's: the same picture, converted by OpenCV
    cv::cvtColor(planes[i], bgr, cv::COLOR_YUV2BGR_I420);
    CHECK(cv::norm(bgr, frames[i], cv::NORM_L1) / double(bgr.total() * 3) < 2.0);
  }
  std::vector<cv::Mat> none;
  our_frames(make_video("planes_odd.mkv", {321, 181}, "-c:v libx264 -pix_fmt yuv444p"), &none);
  for (const cv::Mat& p : none) CHECK(p.empty());
  our_frames(make_video("planes_full_range.avi", {320, 180}, "-c:v mjpeg -pix_fmt yuvj420p -q:v 3"), &none);
  for (const cv::Mat& p : none) CHECK(p.empty());  // yuvj: full range
}

// Labels in blocks of random sizes: uniform areas and edges at every phase of the 2x2 grid.
cv::Mat block_labels(cv::Size size, int classes, std::mt19937& rng) {
  cv::Mat labels(size, CV_8U, cv::Scalar(0));
  std::uniform_int_distribution<int> x(0, size.width - 1), y(0, size.height - 1), c(0, classes);
  for (int i = 0; i < 40; ++i) {
    const cv::Point a(x(rng), y(rng)), b(x(rng), y(rng));
    labels(cv::Rect(a, b)).setTo(c(rng));  // c == classes: outside the palette, black
  }
  return labels;
}

// Limited-range BT.601 of a BGR pixel, as encoders store it.
std::array<double, 3> yuv601(const cv::Vec3b& bgr) {
  const double b = bgr[0], g = bgr[1], r = bgr[2];
  return {16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255, 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255,
          128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255};
}

TEST(overlay_on_i420_looks_like_the_bgr_overlay) {
  std::mt19937 rng(7);
  const cv::Size size(320, 240);
  std::vector<std::array<std::uint8_t, 3>> palette;
  std::uniform_int_distribution<int> channel(0, 255);
  for (int i = 0; i < 19; ++i)
    palette.push_back({std::uint8_t(channel(rng)), std::uint8_t(channel(rng)), std::uint8_t(channel(rng))});
  cv::Mat bgr(size, CV_8UC3);
  cv::randu(bgr, 0, 256);
  cv::GaussianBlur(bgr, bgr, {9, 9}, 3);  // camera-like: neighbouring pixels correlate
  cv::Mat i420, decoded;
  cv::cvtColor(bgr, i420, cv::COLOR_BGR2YUV_I420);
  cv::cvtColor(i420, decoded, cv::COLOR_YUV2BGR_I420);  // the frame the model and overlay() see
  const int w = size.width, h = size.height;
  for (const double alpha : {0.3, 0.5, 0.8}) {
    const cv::Mat labels = block_labels(size, int(palette.size()), rng);
    // Today's overlay as a 4:2:0 video stores it: its luma per pixel, its chroma averaged over each
    // 2x2 block. Blending is linear, so the YUV blend gives the same but for rounding and RGB
    // clipping, at label edges too.
    const cv::Mat expected = emaseg::overlay(decoded, labels, palette, alpha);
    const cv::Mat got = emaseg::detail::overlay_i420(i420, labels, palette, alpha, {});
    const std::uint8_t* y = got.data;
    const std::uint8_t* u = y + w * h;
    const std::uint8_t* v = u + (w / 2) * (h / 2);
    double luma_max = 0, chroma_max = 0;
    for (int r = 0; r < h; r += 2)
      for (int c = 0; c < w; c += 2) {
        double mean_u = 0, mean_v = 0;
        for (int dr = 0; dr < 2; ++dr)
          for (int dc = 0; dc < 2; ++dc) {
            const auto want = yuv601(expected.at<cv::Vec3b>(r + dr, c + dc));
            luma_max = std::max(luma_max, std::abs(want[0] - y[(r + dr) * w + c + dc]));
            mean_u += want[1] / 4;
            mean_v += want[2] / 4;
          }
        const int chroma = (r / 2) * (w / 2) + c / 2;
        chroma_max = std::max({chroma_max, std::abs(mean_u - u[chroma]), std::abs(mean_v - v[chroma])});
      }
    std::printf("alpha %.1f: largest difference to the BGR overlay's YUV: luma %.2f, chroma %.2f levels\n", alpha,
                luma_max, chroma_max);
    if (!(luma_max <= 2 && chroma_max <= 2))  // measured: at most 1.1 levels
      throw check::Failure("alpha " + std::to_string(alpha) + ": the YUV overlay differs from the BGR one");
  }
}

TEST(i420_frames_written_come_back) {
  const cv::Size size(320, 240);
  std::vector<cv::Mat> written;
  const fs::path file = scratch() / "written.mp4";
  {
    emaseg::VideoOutput out(file.string(), 25.0, size, emaseg::VideoOutputOptions{});
    for (int i = 0; i < 12; ++i) {
      cv::Mat bgr(size, CV_8UC3);
      cv::randu(bgr, 0, 256);
      cv::GaussianBlur(bgr, bgr, {15, 15}, 5);
      cv::Mat i420;
      cv::cvtColor(bgr, i420, cv::COLOR_BGR2YUV_I420);
      out.write_i420(i420);
      written.push_back(i420);
    }
    out.close();
  }
  std::vector<cv::Mat> planes;
  our_frames(file, &planes);
  CHECK_EQ(planes.size(), written.size());
  for (std::size_t i = 0; i < planes.size(); ++i) {
    CHECK(!planes[i].empty());
    CHECK(cv::norm(planes[i], written[i], cv::NORM_L1) / double(planes[i].total()) < 3.0);  // crf 23
  }
}

TEST(bad_arguments_are_argument_errors) {
  const auto kind_of = [](const auto& call) {
    try {
      call();
    } catch (const emaseg::Error& e) {
      return e.kind();
    }
    return emaseg::Error::Kind::kRuntime;
  };
  emaseg::VideoOptions bad;
  bad.hwaccel = "nvdec";
  CHECK(kind_of([&] { emaseg::open_video("x.mp4", bad); }) == emaseg::Error::Kind::kArgument);
  emaseg::VideoOutputOptions preset;
  preset.preset = "fastest";
  CHECK(kind_of([&] { emaseg::VideoOutput((scratch() / "p.mp4").string(), 25, {64, 64}, preset); }) ==
        emaseg::Error::Kind::kArgument);
  CHECK(kind_of([&] { emaseg::VideoOutput((scratch() / "p.mp4").string(), 25, {64, 64}, "MJPG"); }) ==
        emaseg::Error::Kind::kOutput);  // a codec there is no encoder for, as RunOutputs' fallback expects
  CHECK(!fs::exists(scratch() / "p.mp4"));
}

}  // namespace
