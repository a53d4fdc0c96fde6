// MultiPipeline: per stream a decoding thread and a consuming thread, one model loop for all.
//
//   stream 0: reader -> decoded queue --\                      /--> results queue -> consumer
//   stream 1: reader -> decoded queue ----> model (caller) ---+---> results queue -> consumer
//   ...                                                        \--> ...
//
// The model takes frames in turn (round-robin), only from streams whose results queue has room:
// a consumer that is behind (a slow disk) holds up its own stream, never the others.
#include "emaseg/multi_pipeline.h"

#include "bounded_queue.h"
#include "latency.h"
#include "pipeline_items.h"
#include "thread_util.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

namespace emaseg {
namespace {

using detail::Clock;
using detail::Decoded;
using detail::Segmented;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A live stream that ran this long since it was (re)opened starts its backoff again at the
// first delay: a stream that comes back and keeps running is healthy again.
constexpr double kHealthySeconds = 10.0;
constexpr auto kModelWait = std::chrono::milliseconds(100);  // the model loop's poll of options.stop
constexpr int kMaxCudaBatch = 8;

// Wakes the model loop when a stream has a frame, has room for a result, or has ended.
class Wakeup {
 public:
  void notify() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++generation_;
    }
    changed_.notify_all();
  }
  long long generation() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return generation_;
  }
  void wait_for_change(long long seen) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, kModelWait, [&] { return generation_ != seen; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  long long generation_ = 0;
};

struct Stream {
  Stream(StreamSpec spec_, std::size_t queue) : spec(std::move(spec_)), decoded(queue), results(queue) {}

  const StreamSpec spec;
  detail::BoundedQueue<Decoded> decoded;    // capacity 1 for live streams (set once opened)
  detail::BoundedQueue<Segmented> results;
  std::atomic<bool> stop_reading{false};    // the run is stopping or the consumer failed
  std::atomic<long long> frames{0}, dropped{0}, unreadable{0}, reconnects{0};
  // The model workers', under Impl::schedule (seen_by_model, results_closed, busy) or while the
  // stream is busy (last_labels): one frame of a stream at a time, so results stay in order.
  long long seen_by_model = 0;
  cv::Mat last_labels;
  bool results_closed = false;
  bool busy = false;

  mutable std::mutex mutex;  // guards the fields below
  StreamState state = StreamState::kOpening;
  bool live = false;
  std::string error;
  detail::LatencyRecorder latency;
  std::optional<Clock::time_point> opened, ended;

  StreamStats snapshot() const {
    StreamStats out;
    out.name = spec.name;
    out.frames = frames;
    out.dropped = dropped;
    out.unreadable = unreadable;
    out.reconnects = reconnects;
    std::lock_guard<std::mutex> lock(mutex);
    out.state = state;
    out.live = live;
    out.error = error;
    out.latency_ms = latency.summary();
    if (opened) {
      const double seconds = seconds_between(*opened, ended.value_or(Clock::now()));
      out.fps = seconds > 0 ? double(out.frames) / seconds : 0;
    }
    return out;
  }
  void set_state(StreamState next, const std::string& why = {}) {
    std::lock_guard<std::mutex> lock(mutex);
    if (state == StreamState::kFailed) return;  // failed is final
    state = next;
    if (!why.empty()) error = why;
  }
};

// Sleeps up to `seconds`, waking early once `stop` is set. False if it was.
bool sleep_unless(const std::atomic<bool>& stop, double seconds) {
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    if (stop) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return !stop;
}

}  // namespace

const char* to_string(StreamState state) {
  switch (state) {
    case StreamState::kOpening: return "opening";
    case StreamState::kRunning: return "running";
    case StreamState::kReconnecting: return "reconnecting";
    case StreamState::kEnded: return "ended";
    case StreamState::kFailed: return "failed";
  }
  return "unknown";
}

struct MultiPipeline::Impl {
  Impl(std::vector<const Segmenter*> models_, std::vector<StreamSpec> specs_, MultiPipelineOptions options_)
      : models(std::move(models_)), specs(std::move(specs_)), options(std::move(options_)) {
    for (const StreamSpec& spec : specs) streams.push_back(std::make_unique<Stream>(spec, std::size_t(std::max(1, options.queue_size))));
  }

  const std::vector<const Segmenter*> models;  // one model worker each
  const std::vector<StreamSpec> specs;
  MultiPipelineOptions options;
  int batch = 1;
  std::vector<std::unique_ptr<Stream>> streams;  // made before run(), so stats() may read them any time
  Wakeup wakeup;
  const StreamEvents* events = nullptr;
  bool ran = false;
  std::mutex schedule;     // which worker takes which frame
  std::size_t next = 0;    // round-robin: the stream asked first
  bool stopping = false;

  void fail(Stream& s, const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.state = StreamState::kFailed;
      s.error = why;
    }
    s.stop_reading = true;
  }

  // Waits before reopening a live stream; false if the run stopped meanwhile.
  bool wait_to_reconnect(std::size_t i, const std::string& why, double& delay, std::mt19937& random) {
    Stream& s = *streams[i];
    s.set_state(StreamState::kReconnecting, why);
    // Jitter keeps streams that dropped together (a switch rebooted) from returning in lockstep.
    const double wait = std::min(options.max_reconnect_delay,
                                 delay * std::uniform_real_distribution<double>(0.8, 1.2)(random));
    if (events->on_notice) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.1f", wait);
      events->on_notice(i, "reconnecting in " + std::string(seconds) + " s: " + why);
    }
    delay = std::min(delay * 2, options.max_reconnect_delay);
    return sleep_unless(s.stop_reading, wait);
  }

  void read_stream(std::size_t i) {
    Stream& s = *streams[i];
    VideoOptions video = options.video;
    video.stop = &s.stop_reading;  // a blocking open or read ends as soon as the run stops
    std::mt19937 random(static_cast<unsigned>(std::random_device{}()) ^ static_cast<unsigned>(i));
    std::optional<detail::Background> background;
    double delay = options.reconnect_delay;
    long long index = 0;
    bool opened_once = false;
    while (!s.stop_reading) {
      std::unique_ptr<FrameSource> source;
      try {
        source = options.open(s.spec, video);
        if (!opened_once && events->on_open) events->on_open(i, *source);
      } catch (const std::exception& e) {
        if (s.stop_reading) break;  // interrupted while opening: not the stream's fault
        if (!opened_once) {
          fail(s, e.what());
          break;
        }
        if (!wait_to_reconnect(i, e.what(), delay, random)) break;
        continue;
      }
      const bool live = source->live();
      const auto opened_at = Clock::now();
      {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.live = live;
        if (!s.opened) s.opened = opened_at;
      }
      if (opened_once) ++s.reconnects;
      if (live) s.decoded.set_capacity(1);  // only the newest frame waits for the model
      if (!opened_once && !live && options.background) background.emplace(true);
      opened_once = true;
      s.set_state(StreamState::kRunning);

      std::string why;  // why a live stream is reopened
      bool done = false;
      try {
        while (!s.stop_reading) {
          if (options.max_frames >= 0 && index >= options.max_frames) {
            done = true;
            break;
          }
          Decoded item;
          item.index = index;
          item.start = Clock::now();
          const FrameSource::Status status = options.i420_planes ? source->read(item.frame, item.i420, item.name)
                                                                 : source->read(item.frame, item.name);
          if (status == FrameSource::Status::kEnd) {
            why = "the stream ended";
            break;
          }
          ++index;
          if (status == FrameSource::Status::kUnreadable) {
            ++s.unreadable;
            continue;
          }
          if (live) {
            item.start = Clock::now();  // waiting for a camera is not processing time
            s.dropped += static_cast<long long>(s.decoded.push_drop_oldest(std::move(item)));
          } else if (!s.decoded.push(std::move(item))) {
            break;
          }
          wakeup.notify();
        }
      } catch (const std::exception& e) {
        if (!live) {
          fail(s, e.what());  // a damaged file: the frames before it still go through
          break;
        }
        why = e.what();
      }
      source.reset();
      if (!live || done || s.stop_reading) break;
      if (seconds_between(opened_at, Clock::now()) >= kHealthySeconds) delay = options.reconnect_delay;
      if (!wait_to_reconnect(i, why, delay, random)) break;
    }
    s.decoded.close();
    wakeup.notify();
  }

  void consume_stream(std::size_t i) {
    Stream& s = *streams[i];
    std::optional<detail::Background> background;
    bool first = true;
    while (std::optional<Segmented> item = s.results.pop()) {
      wakeup.notify();  // room for the model's next result
      if (first && options.background) {  // the source is open now: live or not is known
        std::lock_guard<std::mutex> lock(s.mutex);
        if (!s.live) background.emplace(true);
      }
      first = false;
      const Clock::time_point read_at = item->input.start;
      FrameResult result = detail::to_result(std::move(*item));
      try {
        if (events->on_frame) events->on_frame(i, result);
      } catch (const std::exception& e) {
        fail(s, e.what());
        s.decoded.close();  // the reader stops at its next frame
        s.results.close();
        break;
      }
      ++s.frames;
      std::lock_guard<std::mutex> lock(s.mutex);
      s.latency.add(std::chrono::duration<double, std::milli>(Clock::now() - read_at).count());
    }
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (s.state != StreamState::kFailed) s.state = StreamState::kEnded;
      s.ended = Clock::now();
    }
    wakeup.notify();
    if (events->on_end) events->on_end(i, s.snapshot());
  }

  // Runs the model on the frames taken (one call for several when batching), and hands each
  // result to its stream. Frames a model refuses (Error kArgument) fail their stream only.
  struct Taken {
    std::size_t stream;
    Decoded frame;
    bool infer;  // else it reuses the stream's last labels (options.every)
  };

  void infer(const Segmenter& segmenter, std::vector<Taken>& taken) {
    std::vector<std::size_t> to_model;  // positions in `taken` the model runs on
    for (std::size_t k = 0; k < taken.size(); ++k)
      if (taken[k].infer) to_model.push_back(k);
    std::vector<cv::Mat> labels(taken.size());
    std::vector<double> model_ms(taken.size(), 0.0);
    std::vector<bool> refused(taken.size(), false);
    const auto run_one = [&](std::size_t k) {
      const auto t0 = Clock::now();
      try {
        labels[k] = segmenter.segment(taken[k].frame.frame);
      } catch (const Error& e) {
        if (e.kind() != Error::Kind::kArgument) throw;
        refused[k] = true;
        fail(*streams[taken[k].stream], std::string("frame ") + std::to_string(taken[k].frame.index) + ": " + e.what());
      }
      model_ms[k] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };
    if (to_model.size() > 1) {
      std::vector<cv::Mat> frames;
      for (std::size_t k : to_model) frames.push_back(taken[k].frame.frame);
      const auto t0 = Clock::now();
      bool batched = true;
      std::vector<cv::Mat> out;
      try {
        out = segmenter.segment_batch(frames);
      } catch (const Error& e) {
        if (e.kind() != Error::Kind::kArgument) throw;
        batched = false;  // one frame is refused: find which, one by one
      }
      if (batched) {
        const double each = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / double(frames.size());
        for (std::size_t j = 0; j < to_model.size(); ++j) {
          labels[to_model[j]] = std::move(out[j]);
          model_ms[to_model[j]] = each;
        }
      } else {
        for (std::size_t k : to_model) run_one(k);
      }
    } else if (to_model.size() == 1) {
      run_one(to_model.front());
    }
    for (std::size_t k = 0; k < taken.size(); ++k) {
      Stream& s = *streams[taken[k].stream];
      if (refused[k]) continue;
      Segmented out;
      out.inferred = taken[k].infer;
      const cv::Size size = taken[k].frame.frame.size();
      if (out.inferred) {
        s.last_labels = labels[k];
        out.labels = labels[k];
        out.model_ms = model_ms[k];
      } else if (s.last_labels.size() != size) {
        cv::resize(s.last_labels, out.labels, size, 0, 0, cv::INTER_NEAREST);
      } else {
        out.labels = s.last_labels;
      }
      out.input = std::move(taken[k].frame);
      s.results.push(std::move(out));  // never waits: the worker took the frame only with room
    }
  }

  // Up to `batch` frames of streams that no other worker holds and whose results queue has room,
  // round-robin. Sets `all_done` when every stream has ended. Under `schedule`.
  std::vector<Taken> take(bool& all_done) {
    const std::size_t n = streams.size();
    if (!stopping && options.stop != nullptr && options.stop->load()) {
      stopping = true;
      for (auto& s : streams) s->stop_reading = true;
    }
    std::vector<Taken> taken;
    all_done = true;
    for (std::size_t k = 0; k < n && taken.size() < std::size_t(batch); ++k) {
      const std::size_t i = (next + k) % n;
      Stream& s = *streams[i];
      if (s.results_closed) continue;
      all_done = false;
      if (s.busy) continue;
      if (s.results.closed()) {  // its consumer failed: nothing of it is wanted any more
        s.results_closed = true;
        while (s.decoded.try_pop()) {
        }
        continue;
      }
      if (s.decoded.drained()) {  // its reader is done and every frame went through: the consumer may end
        s.results.close();
        s.results_closed = true;
        continue;
      }
      if (s.results.size() >= s.results.capacity()) continue;
      if (std::optional<Decoded> item = s.decoded.try_pop()) {
        taken.push_back({i, std::move(*item), s.seen_by_model++ % options.every == 0});
        s.busy = true;
        next = (i + 1) % n;
      }
    }
    return taken;
  }

  // One model worker: takes frames, runs its model on them, hands the results on; until every
  // stream has ended.
  void model_loop(const Segmenter& segmenter) {
    for (;;) {
      const long long seen = wakeup.generation();
      bool all_done = false;
      std::vector<Taken> taken;
      {
        const std::lock_guard<std::mutex> lock(schedule);
        taken = take(all_done);
      }
      if (taken.empty()) {
        if (all_done) break;
        wakeup.wait_for_change(seen);
        continue;
      }
      try {
        infer(segmenter, taken);
      } catch (...) {
        release(taken);
        throw;
      }
      release(taken);
    }
  }

  void release(const std::vector<Taken>& taken) {
    {
      const std::lock_guard<std::mutex> lock(schedule);
      for (const Taken& t : taken) streams[t.stream]->busy = false;
    }
    wakeup.notify();  // the streams are free for the next worker
  }

  void stop_all(const std::string& why) {
    for (auto& s : streams) {
      {
        std::lock_guard<std::mutex> lock(s->mutex);
        if (s->state != StreamState::kEnded) {
          s->state = StreamState::kFailed;
          s->error = why;
        }
      }
      s->stop_reading = true;
      s->decoded.close();
      s->results.close();
    }
  }
};

MultiPipeline::MultiPipeline(const Segmenter& segmenter, std::vector<StreamSpec> streams, MultiPipelineOptions options)
    : MultiPipeline(std::vector<const Segmenter*>{&segmenter}, std::move(streams), std::move(options)) {}

MultiPipeline::MultiPipeline(std::vector<const Segmenter*> models, std::vector<StreamSpec> streams,
                             MultiPipelineOptions options)
    : impl_(std::make_unique<Impl>(std::move(models), std::move(streams), std::move(options))) {
  Impl& m = *impl_;
  if (m.models.empty() || std::find(m.models.begin(), m.models.end(), nullptr) != m.models.end())
    throw Error(Error::Kind::kArgument, "MultiPipeline needs at least one model, and no null one");
  if (m.specs.empty()) throw Error(Error::Kind::kArgument, "no streams");
  std::set<std::string> names;
  for (const StreamSpec& spec : m.specs)
    if (!names.insert(spec.name).second) throw Error(Error::Kind::kArgument, "the stream name '" + spec.name + "' is used twice");
  if (m.options.every < 1) throw Error(Error::Kind::kArgument, "every must be >= 1");
  if (m.options.queue_size < 1) throw Error(Error::Kind::kArgument, "queue_size must be >= 1");
  if (m.options.max_batch < 0) throw Error(Error::Kind::kArgument, "max_batch must be >= 0");
  if (!(m.options.reconnect_delay > 0) || m.options.max_reconnect_delay < m.options.reconnect_delay)
    throw Error(Error::Kind::kArgument, "reconnect delays must satisfy 0 < reconnect_delay <= max_reconnect_delay");
  if (!m.options.open) m.options.open = [](const StreamSpec& spec, const VideoOptions& video) {
    return open_stream(spec.input, video);
  };
  const bool cuda = m.models.front()->device().rfind("cuda", 0) == 0;
  m.batch = m.options.max_batch > 0 ? m.options.max_batch
            : cuda                 ? std::min(int(m.specs.size()), kMaxCudaBatch)
                                   : 1;
}

MultiPipeline::~MultiPipeline() = default;

void MultiPipeline::run(const StreamEvents& events) {
  Impl& m = *impl_;
  if (m.ran) throw Error(Error::Kind::kArgument, "MultiPipeline::run runs once");
  m.ran = true;
  m.events = &events;
  std::vector<std::thread> threads;
  std::mutex error_mutex;
  std::exception_ptr model_error;  // the first worker's failure
  // A failed model ends every stream: the other workers then find nothing left to take.
  const auto work = [&](std::size_t worker) {
    try {
      m.model_loop(*m.models[worker]);
    } catch (const std::exception& e) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!model_error) {
        model_error = std::current_exception();
        m.stop_all(std::string("the model failed: ") + e.what());
      }
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!model_error) {
        model_error = std::current_exception();
        m.stop_all("the model failed");
      }
    }
  };
  try {
    for (std::size_t i = 0; i < m.streams.size(); ++i) {
      threads.emplace_back([&m, i] { m.read_stream(i); });
      threads.emplace_back([&m, i] { m.consume_stream(i); });
    }
    for (std::size_t w = 1; w < m.models.size(); ++w) threads.emplace_back(work, w);
  } catch (...) {
    m.stop_all("cannot start the pipeline's threads");
    for (std::thread& t : threads) t.join();
    throw;
  }
  work(0);
  for (std::thread& t : threads) t.join();
  if (model_error) std::rethrow_exception(model_error);
}

std::vector<StreamStats> MultiPipeline::stats() const {
  std::vector<StreamStats> out;
  for (const auto& s : impl_->streams) out.push_back(s->snapshot());
  return out;
}

const std::vector<StreamSpec>& MultiPipeline::streams() const { return impl_->specs; }
int MultiPipeline::batch() const { return impl_->batch; }
int MultiPipeline::workers() const { return int(impl_->models.size()); }

}  // namespace emaseg
