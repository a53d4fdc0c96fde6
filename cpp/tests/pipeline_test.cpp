// run_pipeline with scripted sources: order, --every, limits, stopping, unreadable frames,
// live dropping, error propagation; and the real sources on files written here.
// Arguments: MODEL.pt SCRATCH_DIR
#include "check.h"
#include "scripted_source.h"
#include "test_segmenter.h"

#include <emaseg/pipeline.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <thread>

using check::segmenter;
using emaseg::Error;
using emaseg::FrameResult;
using emaseg::FrameSource;
using check::frame_for;
using check::ScriptedSource;

namespace {

namespace fs = std::filesystem;

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

}  // namespace

namespace {

// Runs `count` scripted frames through the pipeline; checks they arrive in order, each with the
// labels segment() gives it.
emaseg::PipelineStats deliver_in_order(long long count, const emaseg::PipelineOptions& options = {}) {
  ScriptedSource source(count, false);
  std::vector<long long> indices;
  int wrong_labels = 0;
  const auto stats = emaseg::run_pipeline(segmenter(), source, [&](const FrameResult& r) {
    indices.push_back(r.index);
    if (!same(r.labels, segmenter().segment(frame_for(r.index)))) ++wrong_labels;
    return true;
  }, options);
  std::vector<long long> expected(static_cast<std::size_t>(count));
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(indices == expected);
  CHECK_EQ(wrong_labels, 0);
  return stats;
}

}  // namespace

TEST(delivers_every_frame_in_order) {
  const auto stats = deliver_in_order(20);
  CHECK_EQ(stats.read, 20);
  CHECK_EQ(stats.delivered, 20);
  CHECK_EQ(stats.inferred, 20);
  CHECK_EQ(stats.dropped, 0);
  CHECK(!stats.stopped);
  const auto pixels = std::accumulate(stats.class_pixels.begin(), stats.class_pixels.end(), 0ull);
  CHECK_EQ(pixels, 20ull * 24 * 32);
  CHECK_EQ(stats.class_pixels[1], 20ull * 8 * 8);  // the red block
  CHECK_EQ(stats.model_ms.count, 20u);
  CHECK(stats.latency_ms.p95 >= stats.latency_ms.p50);
}

TEST(decoding_beside_or_between_model_calls_delivers_the_same) {
  for (const bool between : {true, false}) {
    emaseg::PipelineOptions options;
    options.decode_between_frames = between;
    CHECK_EQ(deliver_in_order(12, options).inferred, 12);
  }
}

TEST(every_n_reuses_labels) {
  ScriptedSource source(20, false);
  cv::Mat last;
  int wrong = 0;
  emaseg::PipelineOptions options;
  options.every = 3;
  const auto stats = emaseg::run_pipeline(segmenter(), source, [&](const FrameResult& r) {
    if (r.inferred != (r.index % 3 == 0)) ++wrong;
    if (r.inferred) last = r.labels;
    else if (!same(r.labels, last) || r.model_ms != 0) ++wrong;
    return true;
  }, options);
  CHECK_EQ(wrong, 0);
  CHECK_EQ(stats.inferred, 7);  // frames 0, 3, ..., 18
  CHECK_EQ(stats.reused, 13);
}

TEST(max_frames_limits_reading) {
  ScriptedSource source(20, false);
  emaseg::PipelineOptions options;
  options.max_frames = 5;
  const auto stats = emaseg::run_pipeline(segmenter(), source, [](const FrameResult&) { return true; }, options);
  CHECK_EQ(stats.read, 5);
  CHECK_EQ(stats.delivered, 5);
}

TEST(sink_can_stop_the_run) {
  ScriptedSource source(100, false);
  const auto stats = emaseg::run_pipeline(segmenter(), source,
                                          [](const FrameResult& r) { return r.index < 4; });
  CHECK_EQ(stats.delivered, 5);  // frames 0..4; the sink said stop at 4
  CHECK(stats.stopped);
}

TEST(stop_flag_drains_frames_in_flight) {
  ScriptedSource source(1000, false);
  std::atomic<bool> stop{false};
  emaseg::PipelineOptions options;
  options.stop = &stop;
  options.queue_size = 2;
  long long last = -1;
  bool in_order = true;
  const auto stats = emaseg::run_pipeline(segmenter(), source, [&](const FrameResult& r) {
    in_order = in_order && r.index == last + 1;
    last = r.index;
    if (r.index == 3) stop = true;
    return true;
  }, options);
  CHECK(stats.stopped);
  CHECK(in_order);
  CHECK_EQ(stats.delivered, stats.read);  // everything read was drained, nothing lost
  // At most two full queues plus one frame in each thread can be in flight after the flag.
  CHECK(stats.delivered >= 4 && stats.delivered <= 4 + 2 * options.queue_size + 2);
}

TEST(unreadable_frames_are_skipped_and_counted) {
  ScriptedSource source(12, false, {3, 7});
  std::vector<long long> reported, delivered;
  emaseg::PipelineOptions options;
  options.on_unreadable = [&](long long index, const std::string& name) {
    reported.push_back(index);
    CHECK_EQ(name, "frame" + std::to_string(index));
  };
  const auto stats = emaseg::run_pipeline(segmenter(), source, [&](const FrameResult& r) {
    delivered.push_back(r.index);
    return true;
  }, options);
  CHECK_EQ(stats.unreadable, 2);
  CHECK_EQ(stats.delivered, 10);
  CHECK((reported == std::vector<long long>{3, 7}));
  CHECK(std::find(delivered.begin(), delivered.end(), 3) == delivered.end());
  CHECK_EQ(delivered.back(), 11);  // indices keep the input's numbering
}

TEST(live_sources_drop_old_frames) {
  ScriptedSource source(300, true);
  long long last = -1;
  bool increasing = true;
  const auto stats = emaseg::run_pipeline(segmenter(), source, [&](const FrameResult& r) {
    increasing = increasing && r.index > last;
    last = r.index;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a sink slower than the source
    return true;
  });
  CHECK(increasing);
  CHECK(stats.dropped > 0);
  // Every frame read was either delivered or dropped (none can remain at a normal end).
  CHECK_EQ(stats.delivered + stats.dropped, stats.read);
  CHECK_EQ(stats.read, 300);
}

TEST(errors_of_any_stage_reach_the_caller) {
  {
    ScriptedSource source(50, false);
    CHECK_THROWS_IF(emaseg::run_pipeline(segmenter(), source, [](const FrameResult& r) -> bool {
                      if (r.index == 5) throw std::runtime_error("sink failed");
                      return true;
                    }),
                    std::runtime_error,
                    [](const std::runtime_error& e) { return std::string(e.what()) == "sink failed"; });
  }
  {
    ScriptedSource source(50, false, {}, /*bad_type_at=*/6);
    CHECK_THROWS_IF(emaseg::run_pipeline(segmenter(), source, [](const FrameResult&) { return true; }),
                    Error, [](const Error& e) { return e.kind() == Error::Kind::kArgument; });
  }
  {
    ScriptedSource source(50, false, {}, -1, /*throw_at=*/8);
    CHECK_THROWS_IF(emaseg::run_pipeline(segmenter(), source, [](const FrameResult&) { return true; }),
                    Error, [](const Error& e) { return e.kind() == Error::Kind::kInput; });
  }
}

TEST(bad_options_are_refused) {
  ScriptedSource source(5, false);
  emaseg::PipelineOptions options;
  options.every = 0;
  CHECK_THROWS_IF(emaseg::run_pipeline(segmenter(), source, [](const FrameResult&) { return true; }, options),
                  Error, [](const Error& e) { return e.kind() == Error::Kind::kArgument; });
}

TEST(video_file_source_reads_all_frames) {
  const fs::path dir = fs::path(check::test_arg(1)) / "pipeline_video";
  fs::create_directories(dir);
  const std::string path = (dir / "clip.avi").string();
  {
    cv::VideoWriter writer(path, cv::CAP_FFMPEG, cv::VideoWriter::fourcc('F', 'F', 'V', '1'), 10.0,
                           cv::Size(32, 24));
    CHECK(writer.isOpened());
    for (int i = 0; i < 12; ++i) writer.write(frame_for(i));
  }
  const auto source = emaseg::open_video(path);
  CHECK(!source->live());
  CHECK(source->frame_size() == cv::Size(32, 24));
  CHECK_EQ(source->fps(), 10.0);
  int wrong = 0;
  const auto stats = emaseg::run_pipeline(segmenter(), *source, [&](const FrameResult& r) {
    if (!same(r.frame, frame_for(r.index))) ++wrong;  // FFV1 is lossless
    return true;
  });
  CHECK_EQ(stats.delivered, 12);
  CHECK_EQ(stats.unreadable, 0);
  CHECK_EQ(wrong, 0);
}

TEST(image_folder_source_skips_unreadable_files) {
  const fs::path dir = fs::path(check::test_arg(1)) / "pipeline_images";
  fs::remove_all(dir);
  fs::create_directories(dir);
  CHECK(cv::imwrite((dir / "a.png").string(), frame_for(1)));
  std::ofstream((dir / "b.png").string()) << "not a png";
  CHECK(cv::imwrite((dir / "c.jpg").string(), frame_for(2)));
  std::ofstream((dir / "notes.txt").string()) << "ignored: not an image name";
  CHECK(cv::imwrite((dir / "d.PNG").string(), frame_for(3)));
  CHECK(cv::imwrite((dir / ".a.png.Xy12ab.tmp.png").string(), frame_for(4)));  // another run's temporary
  const std::string e = (dir / "e").string();  // no extension: listed because OpenCV reads its contents
  CHECK(cv::imwrite(e + ".png", frame_for(5)));
  fs::rename(e + ".png", e);
  const auto source = emaseg::open_images(dir.string());
  CHECK_EQ(source->frame_count(), 5);
  std::vector<std::string> names;
  const auto stats = emaseg::run_pipeline(segmenter(), *source, [&](const FrameResult& r) {
    names.push_back(fs::path(r.name).filename().string());
    return true;
  });
  CHECK_EQ(stats.unreadable, 1);
  CHECK((names == std::vector<std::string>{"a.png", "c.jpg", "d.PNG", "e"}));
}

TEST(sources_report_input_errors) {
  const auto input_error = [](const Error& e) { return e.kind() == Error::Kind::kInput; };
  CHECK_THROWS_IF(emaseg::open_video("/nonexistent/clip.mp4"), Error, input_error);
  CHECK_THROWS_IF(emaseg::open_images("/nonexistent/folder"), Error, input_error);
  const fs::path empty = fs::path(check::test_arg(1)) / "pipeline_empty";
  fs::create_directories(empty);
  CHECK_THROWS_IF(emaseg::open_images(empty.string()), Error, input_error);
  const std::string text = (fs::path(check::test_arg(1)) / "not_a_video.mp4").string();
  std::ofstream(text) << "plain text";
  CHECK_THROWS_IF(emaseg::open_video(text), Error, input_error);
}
