// run_pipeline: decoding thread -> model thread -> caller's thread, joined by bounded queues.
#include "emaseg/pipeline.h"

#include "bounded_queue.h"
#include "latency.h"
#include "pipeline_items.h"
#include "thread_util.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>


namespace emaseg {
namespace {

using detail::Clock;
using detail::Decoded;
using detail::Segmented;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

PipelineStats run_pipeline(const Segmenter& segmenter, FrameSource& source, const FrameSink& sink,
                           const PipelineOptions& options) {
  if (options.every < 1) throw Error(Error::Kind::kArgument, "every must be >= 1");
  if (options.queue_size < 1) throw Error(Error::Kind::kArgument, "queue_size must be >= 1");
  const auto started = Clock::now();
  const bool live = source.live();
  // A live source keeps one waiting frame: the newest is the one worth segmenting.
  detail::BoundedQueue<Decoded> decoded(live ? 1 : std::size_t(options.queue_size));
  detail::BoundedQueue<Segmented> segmented(std::size_t(options.queue_size));
  std::atomic<bool> abort{false};  // a stage failed or the sink quit: stop without draining
  std::atomic<bool> stopped{false};
  std::atomic<long long> read{0}, dropped{0}, unreadable{0}, failed{0};
  const bool per_image_errors = source.images() && static_cast<bool>(options.on_frame_error);
  std::exception_ptr reader_error, model_error, sink_error;

  PipelineStats stats;
  stats.class_pixels.assign(std::size_t(segmenter.metadata().num_classes), 0);
  detail::LatencyRecorder decode_ms, model_ms, latency_ms;
  // Held by the model while it runs and by the reader while it decodes, when they take turns.
  std::mutex cores;
  const bool take_turns = options.decode_between_frames && !live;

  std::thread reader([&] {
    const detail::Background background(options.background_decoding && !live);  // a file waits; a camera does not
    try {
      for (long long index = 0; !abort; ++index) {
        if (options.stop != nullptr && options.stop->load()) {
          stopped = true;
          break;
        }
        if (options.max_frames >= 0 && index >= options.max_frames) break;
        Decoded item;
        item.index = index;
        item.start = Clock::now();
        std::unique_lock<std::mutex> turn(cores, std::defer_lock);
        if (take_turns) turn.lock();
        const double cpu0 = detail::thread_cpu_ms();
        const FrameSource::Status status = options.i420_planes ? source.read(item.frame, item.i420, item.name)
                                                               : source.read(item.frame, item.name);
        const double read_cpu_ms = detail::thread_cpu_ms() - cpu0;
        if (turn.owns_lock()) turn.unlock();
        if (status == FrameSource::Status::kEnd) break;
        if (status == FrameSource::Status::kUnreadable) {
          ++unreadable;
          if (options.on_unreadable) options.on_unreadable(index, item.name);
          continue;
        }
        ++read;
        decode_ms.add(read_cpu_ms);  // the reader's alone until it is joined
        if (live) {
          item.start = Clock::now();  // waiting for a camera is not processing time
          dropped += static_cast<long long>(decoded.push_drop_oldest(std::move(item)));
        } else if (!decoded.push(std::move(item))) {
          break;
        }
      }
    } catch (...) {
      // The frames read before (a stream that broke off) still go through: the sink keeps them.
      reader_error = std::current_exception();
    }
    decoded.close();
  });
  detail::Joiner join_reader(reader);

  std::thread model([&] {
    try {
      cv::Mat last_labels;
      for (long long n = 0;; ++n) {
        std::optional<Decoded> item = decoded.pop();
        if (!item || abort) break;
        Segmented out;
        out.inferred = n % options.every == 0;
        if (out.inferred) {
          std::unique_lock<std::mutex> turn(cores, std::defer_lock);
          if (take_turns) turn.lock();
          const auto t0 = Clock::now();
          try {
            last_labels = segmenter.segment(item->frame);
          } catch (const Error& e) {
            // One bad image of a batch is that image's problem, not the batch's.
            if (!per_image_errors || e.kind() != Error::Kind::kArgument) throw;
            ++failed;
            options.on_frame_error(item->index, item->name, e.what());
            --n;  // the next image is inferred as if this one had not been there
            continue;
          }
          out.model_ms = ms_since(t0);
          out.labels = last_labels;
        } else if (last_labels.size() != item->frame.size()) {
          // Reused labels across a resolution change: nearest keeps them labels.
          cv::resize(last_labels, out.labels, item->frame.size(), 0, 0, cv::INTER_NEAREST);
        } else {
          out.labels = last_labels;
        }
        out.input = std::move(*item);
        if (!segmented.push(std::move(out))) break;
      }
    } catch (...) {
      model_error = std::current_exception();
      abort = true;
      decoded.close();  // unblock the reader
    }
    segmented.close();
  });
  detail::Joiner join_model(model);
  // After the model's thread started: it keeps the caller's priority.
  const detail::Background background(options.background_sink);

  try {
    while (std::optional<Segmented> item = segmented.pop()) {
      const Clock::time_point read_at = item->input.start;
      FrameResult result = detail::to_result(std::move(*item));
      if (result.inferred) {
        detail::count_classes(result.labels, stats.class_pixels);
        model_ms.add(result.model_ms);
        ++stats.inferred;
      } else {
        ++stats.reused;
      }
      const bool go_on = sink(result);
      latency_ms.add(ms_since(read_at));
      ++stats.delivered;
      if (!go_on) {
        stopped = true;
        break;
      }
    }
  } catch (...) {
    sink_error = std::current_exception();
  }
  // Whatever ended the loop, release the other threads before joining them.
  abort = true;
  decoded.close();
  segmented.close();
  if (model.joinable()) model.join();
  if (reader.joinable()) reader.join();

  if (sink_error) std::rethrow_exception(sink_error);
  if (model_error) std::rethrow_exception(model_error);
  if (reader_error) std::rethrow_exception(reader_error);
  stats.read = read;
  stats.dropped = dropped;
  stats.unreadable = unreadable;
  stats.failed = failed;
  stats.stopped = stopped;
  stats.decode_ms = decode_ms.summary();
  stats.model_ms = model_ms.summary();
  stats.latency_ms = latency_ms.summary();
  stats.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return stats;
}

}  // namespace emaseg
