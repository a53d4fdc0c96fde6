// MultiPipeline with scripted sources: every stream's frames in order with their own labels, one
// stream's failure (open, read, consumer, refused frame) kept to itself, a slow consumer holding
// up only its stream, live reconnects and dropping, stopping; and the sources file.
// Arguments: MODEL.pt SCRATCH_DIR
#include "check.h"
#include "scripted_source.h"
#include "test_segmenter.h"

#include <emaseg/multi_pipeline.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

using check::ScriptedSource;
using check::segmenter;
using emaseg::Error;
using emaseg::FrameResult;
using emaseg::FrameSource;
using emaseg::MultiPipeline;
using emaseg::MultiPipelineOptions;
using emaseg::StreamEvents;
using emaseg::StreamSpec;
using emaseg::StreamState;
using emaseg::StreamStats;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// What the callbacks saw, per stream.
struct Seen {
  std::mutex mutex;
  std::map<std::size_t, std::vector<long long>> indices;
  std::map<std::size_t, StreamStats> ended;
  std::map<std::size_t, Clock::time_point> ended_at;
  int wrong_labels = 0;

  StreamEvents events(std::function<void(std::size_t, const FrameResult&)> extra = {}) {
    StreamEvents e;
    e.on_frame = [this, extra](std::size_t i, const FrameResult& r) {
      if (extra) extra(i, r);
      const cv::Mat expected = segmenter().segment(r.frame);
      const std::lock_guard<std::mutex> lock(mutex);
      if (r.inferred && cv::norm(expected, r.labels, cv::NORM_INF) != 0) ++wrong_labels;
      indices[i].push_back(r.index);
    };
    e.on_end = [this](std::size_t i, const StreamStats& s) {
      const std::lock_guard<std::mutex> lock(mutex);
      ended[i] = s;
      ended_at[i] = Clock::now();
    };
    return e;
  }
};

// Opens "N" as a file of N scripted frames, "fail" as an input that does not open, "throwN" as
// a file whose read fails after N frames, "bigN" as N frames the model refuses.
MultiPipelineOptions scripted(MultiPipelineOptions options = {}) {
  options.open = [](const StreamSpec& spec, const emaseg::VideoOptions&) -> std::unique_ptr<FrameSource> {
    if (spec.input == "fail") throw Error(Error::Kind::kInput, "cannot open '" + spec.input + "'");
    if (spec.input.rfind("throw", 0) == 0) {
      const long long at = std::stoll(spec.input.substr(5));
      return std::make_unique<ScriptedSource>(at + 10, false, std::set<long long>{}, -1, at);
    }
    return std::make_unique<ScriptedSource>(std::stoll(spec.input), false);
  };
  return options;
}

}  // namespace

TEST(every_stream_gets_its_frames_in_order_with_their_labels) {
  MultiPipeline pipeline(segmenter(), {{"a", "12"}, {"b", "7"}, {"c", "9"}}, scripted());
  Seen seen;
  pipeline.run(seen.events());
  const std::vector<long long> sizes = {12, 7, 9};
  for (std::size_t i = 0; i < 3; ++i) {
    std::vector<long long> expected(std::size_t(sizes[i]));
    for (std::size_t k = 0; k < expected.size(); ++k) expected[k] = (long long)k;
    CHECK(seen.indices[i] == expected);
    CHECK(seen.ended[i].state == StreamState::kEnded);
    CHECK_EQ(seen.ended[i].frames, sizes[i]);
  }
  CHECK_EQ(seen.wrong_labels, 0);
  const std::vector<StreamStats> stats = pipeline.stats();
  CHECK_EQ(stats.size(), std::size_t(3));
  CHECK_EQ(stats[1].name, std::string("b"));
  CHECK(stats[0].latency_ms.count == 12 && stats[0].fps > 0);
}

TEST(batching_gives_the_same_labels) {
  MultiPipelineOptions options = scripted();
  options.max_batch = 3;
  MultiPipeline pipeline(segmenter(), {{"a", "6"}, {"b", "6"}, {"c", "6"}}, options);
  CHECK_EQ(pipeline.batch(), 3);
  Seen seen;
  pipeline.run(seen.events());
  CHECK_EQ(seen.wrong_labels, 0);
  for (std::size_t i = 0; i < 3; ++i) CHECK_EQ(seen.indices[i].size(), std::size_t(6));
}

TEST(several_model_workers_keep_each_stream_in_order_with_its_labels) {
  emaseg::Options one_thread;
  one_thread.threads = 1;
  const emaseg::Segmenter second(check::test_arg(0), one_thread), third(check::test_arg(0), one_thread);
  MultiPipeline pipeline({&segmenter(), &second, &third}, {{"a", "15"}, {"b", "9"}, {"c", "12"}, {"d", "4"}},
                         scripted());
  CHECK_EQ(pipeline.workers(), 3);
  Seen seen;
  pipeline.run(seen.events());
  CHECK_EQ(seen.wrong_labels, 0);
  const std::vector<long long> sizes = {15, 9, 12, 4};
  for (std::size_t i = 0; i < 4; ++i) {
    std::vector<long long> expected(std::size_t(sizes[i]));
    for (std::size_t k = 0; k < expected.size(); ++k) expected[k] = (long long)k;
    CHECK(seen.indices[i] == expected);  // one frame of a stream at a time: never out of order
  }
}

TEST(the_cpu_takes_streams_one_frame_at_a_time) {
  MultiPipeline pipeline(segmenter(), {{"a", "1"}, {"b", "1"}}, scripted());
  CHECK_EQ(pipeline.batch(), 1);  // measured: one batched call is no faster on the CPU
}

TEST(a_stream_that_does_not_open_fails_alone) {
  MultiPipeline pipeline(segmenter(), {{"good", "8"}, {"bad", "fail"}, {"also", "5"}}, scripted());
  Seen seen;
  pipeline.run(seen.events());
  CHECK(seen.ended[0].state == StreamState::kEnded && seen.ended[0].frames == 8);
  CHECK(seen.ended[1].state == StreamState::kFailed);
  CHECK(seen.ended[1].error.find("cannot open 'fail'") != std::string::npos);
  CHECK(seen.ended[2].state == StreamState::kEnded && seen.ended[2].frames == 5);
}

TEST(a_file_that_breaks_off_keeps_the_frames_before_and_fails_alone) {
  MultiPipeline pipeline(segmenter(), {{"broken", "throw4"}, {"good", "10"}}, scripted());
  Seen seen;
  pipeline.run(seen.events());
  CHECK(seen.ended[0].state == StreamState::kFailed);
  CHECK_EQ(seen.indices[0].size(), std::size_t(4));
  CHECK(seen.ended[0].error.find("scripted read failure") != std::string::npos);
  CHECK(seen.ended[1].state == StreamState::kEnded && seen.ended[1].frames == 10);
}

TEST(a_consumer_that_throws_fails_only_its_stream) {
  MultiPipeline pipeline(segmenter(), {{"a", "20"}, {"b", "20"}}, scripted());
  Seen seen;
  pipeline.run(seen.events([](std::size_t i, const FrameResult& r) {
    if (i == 0 && r.index == 3) throw Error(Error::Kind::kOutput, "disk full");
  }));
  CHECK(seen.ended[0].state == StreamState::kFailed);
  CHECK_EQ(seen.ended[0].error, std::string("disk full"));
  CHECK_EQ(seen.ended[0].frames, 3);
  CHECK(seen.ended[1].state == StreamState::kEnded && seen.ended[1].frames == 20);
}

TEST(a_slow_consumer_holds_up_only_its_own_stream) {
  MultiPipeline pipeline(segmenter(), {{"slow", "15"}, {"fast", "15"}}, scripted());
  Seen seen;
  pipeline.run(seen.events([](std::size_t i, const FrameResult&) {
    if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }));
  CHECK_EQ(seen.ended[1].frames, 15);
  // 15 x 60 ms for the slow one; the fast one must not wait for it.
  const double gap = std::chrono::duration<double>(seen.ended_at[0] - seen.ended_at[1]).count();
  CHECK(gap > 0.4);
}

TEST(a_frame_the_model_refuses_fails_its_stream_only) {
  MultiPipelineOptions options;
  options.open = [](const StreamSpec& spec, const emaseg::VideoOptions&) -> std::unique_ptr<FrameSource> {
    // bad_type_at 2: a one-channel frame, which segment() refuses (Error kArgument)
    return std::make_unique<ScriptedSource>(6, false, std::set<long long>{}, spec.name == "bad" ? 2 : -1);
  };
  MultiPipeline pipeline(segmenter(), {{"bad", "x"}, {"good", "y"}}, options);
  Seen seen;
  pipeline.run(seen.events());
  CHECK(seen.ended[0].state == StreamState::kFailed);
  CHECK(seen.ended[0].error.find("frame 2") != std::string::npos);
  CHECK(seen.ended[1].state == StreamState::kEnded && seen.ended[1].frames == 6);
}

TEST(a_live_stream_that_ends_is_reopened_with_backoff) {
  std::atomic<int> opens{0};
  std::atomic<bool> stop{false};
  MultiPipelineOptions options;
  options.reconnect_delay = 0.05;
  options.max_reconnect_delay = 0.2;
  options.stop = &stop;
  // 1st open: 5 live frames then the end; 2nd: the server is down; 3rd and later: 5 frames.
  options.open = [&opens](const StreamSpec&, const emaseg::VideoOptions&) -> std::unique_ptr<FrameSource> {
    if (++opens == 2) throw Error(Error::Kind::kInput, "Connection refused");
    return std::make_unique<ScriptedSource>(5, true, std::set<long long>{}, -1, -1, 5);
  };
  std::vector<std::string> notices;
  Seen seen;
  StreamEvents events = seen.events([&stop](std::size_t, const FrameResult& r) {
    if (r.index >= 8) stop = true;  // frames flow again after the reconnect
  });
  std::mutex notice_mutex;
  events.on_notice = [&](std::size_t, const std::string& message) {
    const std::lock_guard<std::mutex> lock(notice_mutex);
    notices.push_back(message);
  };
  MultiPipeline pipeline(segmenter(), {{"cam", "live"}}, options);
  pipeline.run(events);
  CHECK(opens >= 3);
  CHECK(seen.ended[0].state == StreamState::kEnded);
  CHECK(seen.ended[0].live);
  CHECK_EQ(seen.ended[0].reconnects, 1);
  CHECK(seen.indices[0].back() >= 8);  // indices go on across the reconnect: masks never collide
  CHECK(notices.size() >= 2);
  CHECK(notices[0].find("reconnecting in") != std::string::npos && notices[0].find("the stream ended") != std::string::npos);
  CHECK(notices[1].find("Connection refused") != std::string::npos);
}

TEST(a_live_stream_keeps_only_its_newest_frame_while_the_model_is_busy) {
  std::atomic<bool> stop{false};
  MultiPipelineOptions options;
  options.stop = &stop;
  options.open = [](const StreamSpec&, const emaseg::VideoOptions&) -> std::unique_ptr<FrameSource> {
    return std::make_unique<ScriptedSource>(100000, true, std::set<long long>{}, -1, -1, 1);
  };
  MultiPipeline pipeline(segmenter(), {{"cam", "live"}}, options);
  Seen seen;
  pipeline.run(seen.events([&stop](std::size_t, const FrameResult& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a consumer slower than the camera
    if (r.index > 300) stop = true;
  }));
  const StreamStats& s = seen.ended[0];
  CHECK(s.dropped > 0);
  CHECK(s.frames + s.dropped >= 300);
  CHECK(s.frames < 150);  // most frames were dropped, none queued up
}

TEST(stop_ends_every_stream_after_the_frames_in_flight) {
  std::atomic<bool> stop{false};
  MultiPipelineOptions options = scripted();
  options.stop = &stop;
  MultiPipeline pipeline(segmenter(), {{"a", "100000"}, {"b", "100000"}}, options);
  Seen seen;
  pipeline.run(seen.events([&stop](std::size_t, const FrameResult& r) {
    if (r.index == 5) stop = true;
  }));
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(seen.ended[i].state == StreamState::kEnded);
    CHECK(seen.ended[i].frames < 100);
  }
}

TEST(bad_options_are_refused) {
  const auto refused = [](std::vector<StreamSpec> specs, MultiPipelineOptions options) {
    try {
      MultiPipeline pipeline(segmenter(), std::move(specs), std::move(options));
    } catch (const Error& e) {
      return e.kind() == Error::Kind::kArgument;
    }
    return false;
  };
  CHECK(refused({}, {}));
  CHECK(refused({{"a", "1"}, {"a", "2"}}, {}));
  MultiPipelineOptions options;
  options.reconnect_delay = 0;
  CHECK(refused({{"a", "1"}}, options));
  try {
    MultiPipeline pipeline(std::vector<const emaseg::Segmenter*>{}, {{"a", "1"}}, {});
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.kind() == Error::Kind::kArgument);
  }
}

TEST(sources_files_name_streams) {
  const fs::path dir = fs::path(check::test_arg(1)) / "sources";
  fs::create_directories(dir);
  const fs::path file = dir / "cameras.txt";
  {
    std::ofstream out(file);
    out << "# the yard\n"
        << "yard=rtsp://10.0.0.5/stream?profile=1\n"
        << "\n"
        << "  clips/gate.mp4  \n"
        << "http://host/live/gate.ts\n"
        << "gate=/abs/other.mp4\n"
        << "door=camera:0\n";
  }
  const std::vector<StreamSpec> specs = emaseg::read_sources(file.string());
  CHECK_EQ(specs.size(), std::size_t(5));
  CHECK_EQ(specs[0].name, std::string("yard"));
  CHECK_EQ(specs[0].input, std::string("rtsp://10.0.0.5/stream?profile=1"));
  CHECK_EQ(specs[1].name, std::string("gate_2"));  // "gate" is taken by an explicit name
  CHECK_EQ(specs[1].input, (dir / "clips/gate.mp4").string());  // relative to the sources file
  CHECK_EQ(specs[2].name, std::string("gate_3"));
  CHECK_EQ(specs[3].name, std::string("gate"));
  CHECK_EQ(specs[4].input, std::string("camera:0"));

  const auto error_of = [&](const std::string& text) {
    std::ofstream(file) << text;
    try {
      emaseg::read_sources(file.string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(error_of("my cam=a.mp4\n").find("line 1: the stream name 'my cam'") != std::string::npos);
  CHECK(error_of("a=x.mp4\na=y.mp4\n").find("line 2: the name 'a' is used twice") != std::string::npos);
  CHECK(error_of("# nothing\n\n").find("lists no input") != std::string::npos);
  CHECK(error_of("a=\n").find("names no input") != std::string::npos);
  try {
    emaseg::read_sources((dir / "missing.txt").string());
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.kind() == Error::Kind::kInput);
  }
}

TEST(inputs_are_named_after_their_stems) {
  const std::vector<StreamSpec> specs =
      emaseg::name_streams({"/v/cam.mp4", "rtsp://h/cam?x=1", "/v/a b.mp4", "camera:2", "http://h/"});
  CHECK_EQ(specs[0].name, std::string("cam"));
  CHECK_EQ(specs[1].name, std::string("cam_2"));
  CHECK_EQ(specs[2].name, std::string("a_b"));
  CHECK_EQ(specs[3].name, std::string("camera_2"));
  CHECK_EQ(specs[4].name, std::string("stream"));
}
