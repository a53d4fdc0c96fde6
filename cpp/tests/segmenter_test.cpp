// Segmenter on the tiny contract model (make_test_model.py): labels, batches, probabilities,
// colours, loading from memory, errors and concurrent use.
// Arguments: MODEL.pt MODEL_WITHOUT_METADATA.pt
#include "check.h"

#include <emaseg/emaseg.h>

#include <opencv2/core.hpp>

#include <cmath>
#include <fstream>
#include <iterator>
#include <thread>

using emaseg::Error;

namespace {

// The tiny model's classes by colour (BGR): dark/grey -> 0, red -> 1, green -> 2, blue -> 3.
const cv::Vec3b kRed(40, 40, 230), kGreen(40, 200, 40), kBlue(230, 60, 40), kGrey(90, 90, 90);

// Four vertical bands, one per class, plus a row of noise so batches are not trivial.
cv::Mat bands(int rows, int cols, unsigned seed) {
  cv::Mat image(rows, cols, CV_8UC3);
  for (int x = 0; x < cols; ++x) {
    const cv::Vec3b colours[] = {kGrey, kRed, kGreen, kBlue};
    image.col(x).setTo(colours[(4 * x) / cols]);
  }
  cv::RNG rng(seed);
  rng.fill(image.row(0), cv::RNG::UNIFORM, 0, 256);
  return image;
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

auto error_of(Error::Kind kind, const std::string& fragment) {
  return [kind, fragment](const Error& e) {
    return e.kind() == kind && std::string(e.what()).find(fragment) != std::string::npos;
  };
}

emaseg::Options one_thread() {
  emaseg::Options options;
  options.threads = 1;
  return options;
}

}  // namespace

TEST(reads_metadata) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  const emaseg::Metadata& m = seg.metadata();
  CHECK_EQ(m.num_classes, 4);
  CHECK_EQ(m.class_names[2], std::string("green"));
  CHECK_EQ(int(m.palette[1][0]), 220);  // RGB as written by the exporter
  CHECK_EQ(m.config_name, std::string("tiny_colour_test"));
  CHECK_EQ(m.format_version, 1);
  CHECK_EQ(seg.device(), std::string("cpu"));
}

TEST(labels_follow_colours) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  const cv::Mat image = bands(24, 64, 1);
  const cv::Mat labels = seg.segment(image);
  CHECK_EQ(labels.type(), CV_8U);
  CHECK(labels.size() == image.size());
  for (int band = 0; band < 4; ++band) CHECK_EQ(int(labels.at<uchar>(5, band * 16 + 8)), band);
}

TEST(non_contiguous_frames_work) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  const cv::Mat big = bands(40, 128, 2);
  const cv::Mat roi = big(cv::Rect(8, 4, 64, 24));  // rows are not contiguous
  CHECK(!roi.isContinuous());
  CHECK(same(seg.segment(roi), seg.segment(roi.clone())));
}

TEST(batch_equals_single) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  // Sizes change mid-batch: runs of equal sizes share a model call.
  const std::vector<cv::Mat> frames = {bands(24, 64, 3), bands(24, 64, 4), bands(16, 40, 5),
                                       bands(24, 64, 6)};
  const std::vector<cv::Mat> batch = seg.segment_batch(frames);
  CHECK_EQ(batch.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) CHECK(same(batch[i], seg.segment(frames[i])));
  CHECK(seg.segment_batch({}).empty());
}

TEST(probabilities_agree_with_labels) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  const cv::Mat image = bands(24, 64, 7);
  const std::vector<cv::Mat> planes = seg.probabilities(image);
  CHECK_EQ(planes.size(), 4u);
  cv::Mat sum = cv::Mat::zeros(image.size(), CV_32F);
  for (const cv::Mat& plane : planes) {
    CHECK_EQ(plane.type(), CV_32F);
    CHECK(plane.size() == image.size());
    sum += plane;
  }
  // float32 softmax over 4 classes: the sum is 1 up to a few ulps.
  CHECK(cv::norm(sum, cv::Mat::ones(image.size(), CV_32F), cv::NORM_INF) < 1e-5);
  const cv::Mat labels = seg.segment(image);
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      int best = 0;
      for (int c = 1; c < 4; ++c)
        if (planes[c].at<float>(y, x) > planes[best].at<float>(y, x)) best = c;
      CHECK_EQ(best, int(labels.at<uchar>(y, x)));
    }
  }
}

TEST(optimize_keeps_labels_and_probabilities) {
  const emaseg::Segmenter plain(check::test_arg(0), one_thread());
  emaseg::Options options = one_thread();
  options.optimize = true;
  const emaseg::Segmenter optimized(check::test_arg(0), options);
  CHECK(optimized.options().optimize);
  const std::vector<char> bytes = read_file(check::test_arg(0));
  const emaseg::Segmenter from_memory(bytes.data(), bytes.size(), options);
  for (const unsigned seed : {11u, 12u}) {
    const cv::Mat image = bands(24 + seed, 64, seed);
    const cv::Mat labels = plain.segment(image);
    CHECK(same(optimized.segment(image), labels));
    CHECK(same(from_memory.segment(image), labels));
    const std::vector<cv::Mat> expected = plain.probabilities(image);
    const std::vector<cv::Mat> got = optimized.probabilities(image);
    CHECK_EQ(got.size(), expected.size());
    for (std::size_t c = 0; c < got.size(); ++c)
      CHECK(cv::norm(got[c], expected[c], cv::NORM_INF) <= 1e-4);
  }
  const std::vector<cv::Mat> batch = {bands(24, 64, 13), bands(24, 64, 14)};
  const std::vector<cv::Mat> batch_labels = optimized.segment_batch(batch);
  for (std::size_t i = 0; i < batch.size(); ++i) CHECK(same(batch_labels[i], plain.segment(batch[i])));
}

TEST(colorize_uses_palette_in_bgr) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  cv::Mat labels = (cv::Mat_<uchar>(1, 5) << 0, 1, 2, 3, 200);
  const cv::Mat colours = seg.colorize(labels);
  CHECK_EQ(colours.type(), CV_8UC3);
  CHECK(colours.at<cv::Vec3b>(0, 1) == cv::Vec3b(60, 20, 220));  // palette red [220, 20, 60]
  CHECK(colours.at<cv::Vec3b>(0, 3) == cv::Vec3b(230, 60, 30));
  CHECK(colours.at<cv::Vec3b>(0, 4) == cv::Vec3b(0, 0, 0));     // outside the palette
  cv::Mat wide;
  labels.convertTo(wide, CV_32S);
  CHECK(same(seg.colorize(wide), colours));
}

TEST(overlay_blends_with_alpha) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  const cv::Mat image = bands(24, 64, 8);
  const cv::Mat labels = seg.segment(image);
  CHECK(same(seg.overlay(image, labels, 0.0), image));
  CHECK(same(seg.overlay(image, labels, 1.0), seg.colorize(labels)));
  const cv::Mat half = seg.overlay(image, labels, 0.5);
  cv::Mat expected;
  cv::addWeighted(image, 0.5, seg.colorize(labels), 0.5, 0.0, expected);
  // Fixed point rounds exact halves up, addWeighted to even: at most one level apart.
  CHECK(cv::norm(half, expected, cv::NORM_INF) <= 1.0);
  CHECK(!same(seg.overlay(image, labels, 0.3), image));
  CHECK_THROWS_IF(seg.overlay(image, labels, 1.5), Error, error_of(Error::Kind::kArgument, "alpha"));
  CHECK_THROWS_IF(seg.overlay(image, labels(cv::Rect(0, 0, 8, 8)), 0.5), Error,
                  error_of(Error::Kind::kArgument, "size"));
}

TEST(memory_buffer_equals_path) {
  const emaseg::Segmenter from_path(check::test_arg(0), one_thread());
  const std::vector<char> bytes = read_file(check::test_arg(0));
  CHECK(!bytes.empty());
  const emaseg::Segmenter from_memory(bytes.data(), bytes.size(), one_thread());
  CHECK_EQ(from_memory.metadata().json, from_path.metadata().json);
  const cv::Mat image = bands(24, 64, 9);
  CHECK(same(from_memory.segment(image), from_path.segment(image)));
}

TEST(missing_file_is_a_model_error) {
  CHECK_THROWS_IF(emaseg::Segmenter("/nonexistent/model.pt"), Error,
                  error_of(Error::Kind::kModel, "does not exist"));
}

TEST(error_messages_escape_terminal_controls) {
  // ESC (clear screen), BEL, DEL and UTF-8's C1 CSI become visible escapes; line breaks stay.
  const Error e(Error::Kind::kInput, "a\x1b[2Jb\x07" "c\x7f\nd\xc2\x9b" "e \xc3\xa9");
  CHECK_EQ(std::string(e.what()), std::string("a\\x1b[2Jb\\x07c\\x7f\nd\\x9be \xc3\xa9"));
  CHECK_THROWS_IF(emaseg::Segmenter("/nonexistent/\x1b]0;title\x07" ".pt"), Error,
                  error_of(Error::Kind::kModel, "\\x1b]0;title\\x07.pt"));
}

TEST(garbage_is_not_torchscript) {
  const std::string path = check::test_arg(0) + ".garbage";
  std::ofstream(path, std::ios::binary) << std::string(4096, 'x');
  CHECK_THROWS_IF(emaseg::Segmenter{path}, Error, error_of(Error::Kind::kModel, "not a TorchScript archive"));
  const std::string junk(100, '\x7f');
  CHECK_THROWS_IF(emaseg::Segmenter(junk.data(), junk.size()), Error,
                  error_of(Error::Kind::kModel, "not a TorchScript archive"));
  CHECK_THROWS_IF(emaseg::Segmenter(junk.data(), 0), Error, error_of(Error::Kind::kModel, "empty"));
}

TEST(torchscript_without_metadata_is_refused) {
  CHECK_THROWS_IF(emaseg::Segmenter(check::test_arg(1)), Error,
                  error_of(Error::Kind::kModel, "without metadata.json"));
}

TEST(bad_frames_are_argument_errors) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  CHECK_THROWS_IF(seg.segment(cv::Mat()), Error, error_of(Error::Kind::kArgument, "empty frame"));
  CHECK_THROWS_IF(seg.segment(cv::Mat(16, 16, CV_8UC1, cv::Scalar(0))), Error,
                  error_of(Error::Kind::kArgument, "CV_8UC1"));
  CHECK_THROWS_IF(seg.segment(cv::Mat(16, 16, CV_8UC4, cv::Scalar(0))), Error,
                  error_of(Error::Kind::kArgument, "cvtColor"));
  CHECK_THROWS_IF(seg.segment(cv::Mat(16, 16, CV_32FC3, cv::Scalar(0))), Error,
                  error_of(Error::Kind::kArgument, "CV_32FC3"));
  CHECK_THROWS_IF(seg.segment(cv::Mat(4, 16, CV_8UC3, cv::Scalar(0))), Error,
                  error_of(Error::Kind::kArgument, "at least 8x8"));
  CHECK_THROWS_IF(seg.segment_batch({bands(16, 16, 1), cv::Mat()}), Error,
                  error_of(Error::Kind::kArgument, "empty frame"));
}

TEST(device_options_are_checked) {
  emaseg::Options options;
  options.device = "gpu";
  CHECK_THROWS_IF(emaseg::Segmenter(check::test_arg(0), options), Error,
                  error_of(Error::Kind::kArgument, "unknown device 'gpu'"));
  options.device = "cpu";
  options.half = true;
  CHECK_THROWS_IF(emaseg::Segmenter(check::test_arg(0), options), Error,
                  error_of(Error::Kind::kArgument, "half precision needs a CUDA device"));
  options.half = false;
  options.device = "cuda:63";  // beyond any machine's GPU count, or no CUDA at all
  CHECK_THROWS_IF(emaseg::Segmenter(check::test_arg(0), options), Error,
                  error_of(Error::Kind::kDevice, "cuda:63"));
  options.device = "cpu";
  options.threads = -1;
  CHECK_THROWS_IF(emaseg::Segmenter(check::test_arg(0), options), Error,
                  error_of(Error::Kind::kArgument, "threads"));
}

TEST(warmup_and_move_keep_working) {
  emaseg::Options options = one_thread();
  options.warmup_runs = 2;
  options.warmup_size = cv::Size(32, 16);
  emaseg::Segmenter seg(check::test_arg(0), options);
  const cv::Mat image = bands(24, 64, 10);
  const cv::Mat before = seg.segment(image);
  emaseg::Segmenter moved(std::move(seg));
  CHECK(same(moved.segment(image), before));
}

TEST(one_segmenter_serves_many_threads) {
  const emaseg::Segmenter seg(check::test_arg(0), one_thread());
  std::vector<cv::Mat> images, expected;
  for (unsigned i = 0; i < 4; ++i) {
    images.push_back(bands(24, 64, 20 + i));
    expected.push_back(seg.segment(images.back()));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        if (!same(seg.segment(images[t]), expected[t])) ++mismatches[t];
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) CHECK_EQ(mismatches[t], 0);
}
