#include "report.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <sstream>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace emaseg::cli {
namespace {

std::mutex g_stderr_mutex;     // the pipeline's threads report too
bool g_progress_open = false;  // a '\r' progress line is on screen

bool stderr_is_terminal() {
#if defined(__unix__) || defined(__APPLE__)
  return isatty(STDERR_FILENO) != 0;
#else
  return false;
#endif
}

long peak_rss_kb() {  // VmHWM: the most resident memory this process has used
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

nlohmann::ordered_json text_or_null(const std::string& text) {
  return text.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(text);
}

nlohmann::ordered_json json_latency(const emaseg::LatencySummary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50}, {"p95", s.p95}, {"max", s.max}};
}

}  // namespace

void print_stderr(const std::string& kind, std::string message) {
  for (char& c : message)
    if (c == '\n' || c == '\r') c = ' ';  // one line per message, whatever the source said
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  if (g_progress_open) std::fputc('\n', stderr);
  g_progress_open = false;
  std::fprintf(stderr, "ema_seg: %s: %s\n", kind.c_str(), emaseg::printable(message).c_str());
  std::fflush(stderr);
}

Progress::Progress(bool enabled, long long total)
    : enabled_(enabled), total_(total), terminal_(stderr_is_terminal()) {}

void Progress::update(long long frames) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double interval = terminal_ ? 0.25 : 2.0;  // a log file wants few lines
  if (std::chrono::duration<double>(now - last_).count() < interval) return;
  last_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double fps = seconds > 0 ? double(frames) / seconds : 0.0;
  char line[160];
  if (total_ > 0) {
    const double eta = fps > 0 ? double(total_ - frames) / fps : 0.0;
    std::snprintf(line, sizeof line, "frames %lld/%lld (%.0f%%)  %.1f fps  ETA %.0fs", frames, total_,
                  100.0 * double(frames) / double(total_), fps, eta > 0 ? eta : 0.0);
  } else {
    std::snprintf(line, sizeof line, "frames %lld  %.1f fps", frames, fps);
  }
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  if (terminal_) {
    std::fprintf(stderr, "\r%-60s", line);
    g_progress_open = true;
  } else {
    std::fprintf(stderr, "%s\n", line);
  }
  std::fflush(stderr);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  if (g_progress_open) std::fputc('\n', stderr);
  g_progress_open = false;
}

void print_json(const RunReport& r, const emaseg::Metadata& meta, int threads, bool benchmark) {
  const auto& s = r.stats;
  std::uint64_t pixels = 0;
  for (const auto count : s.class_pixels) pixels += count;
  nlohmann::ordered_json shares = nlohmann::ordered_json::array();
  for (std::size_t c = 0; c < s.class_pixels.size(); ++c)
    shares.push_back({{"id", c},
                      {"name", c < meta.class_names.size() ? meta.class_names[c] : ""},
                      {"share", pixels ? double(s.class_pixels[c]) / double(pixels) : 0.0}});
  const long rss = peak_rss_kb();
  const nlohmann::ordered_json report = {
      {"input", r.input},
      {"model", r.model},
      {"config_name", meta.config_name},
      {"device", r.device},
      {"threads", threads},
      {"output", text_or_null(r.output)},
      {"mask_dir", text_or_null(r.mask_dir)},
      {"codec", text_or_null(r.codec)},
      {"decoder", text_or_null(r.decoder)},
      {"frames", s.delivered},
      {"inferred", s.inferred},
      {"reused", s.reused},
      {"dropped", s.dropped},
      {"unreadable", s.unreadable},
      {"failed", s.failed},
      {"seconds", s.seconds},
      {"fps", s.seconds > 0 ? double(s.delivered) / s.seconds : 0.0},
      {"interrupted", r.interrupted},
      {"partial", r.partial},
      {"benchmark", benchmark},
      {"model_ms", json_latency(s.model_ms)},
      {"end_to_end_ms", json_latency(s.latency_ms)},
      // Where a frame's time goes, stage by stage (decode includes the conversion to BGR).
      {"stages_ms",
       {{"decode", json_latency(s.decode_ms)},
        {"model", json_latency(s.model_ms)},
        {"overlay", json_latency(r.overlay_ms)},
        {"encode", json_latency(r.encode_ms)}}},
      {"class_share", shares},
      {"peak_rss_mb", rss >= 0 ? nlohmann::ordered_json(double(rss) / 1024.0) : nlohmann::ordered_json()},
  };
  // Invalid UTF-8 in a path (a file name is bytes) is replaced rather than failing the run.
  // ensure_ascii: every control character of a file name or URL arrives as a \u escape.
  const std::string text = report.dump(2, ' ', true, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

void print_benchmark(const RunReport& r, cv::Size size, int warmup_runs, int threads) {
  const auto& s = r.stats;
  std::printf("benchmark: %lld frames of %dx%d on %s, %s thread(s), after %d warm-up runs\n", s.delivered,
              size.width, size.height, r.device.c_str(), threads > 0 ? std::to_string(threads).c_str() : "default",
              warmup_runs);
  std::printf("  model only  p50 %8.2f ms  p95 %8.2f ms  (%.1f fps at p50)\n", s.model_ms.p50, s.model_ms.p95,
              s.model_ms.p50 > 0 ? 1000.0 / s.model_ms.p50 : 0.0);
  std::printf("  end-to-end  p50 %8.2f ms  p95 %8.2f ms  throughput %.1f fps\n", s.latency_ms.p50,
              s.latency_ms.p95, s.seconds > 0 ? double(s.delivered) / s.seconds : 0.0);
  std::printf("  stages p50  decode %.2f ms  model %.2f ms  overlay %.2f ms  encode %.2f ms\n", s.decode_ms.p50,
              s.model_ms.p50, r.overlay_ms.p50, r.encode_ms.p50);
  std::fflush(stdout);
}

void print_summary(const RunReport& r) {
  const auto& s = r.stats;
  std::ostringstream line;
  line << std::fixed << std::setprecision(2);
  line << (r.interrupted ? "interrupted after " : "done: ") << s.delivered << " frame(s) in " << s.seconds
       << " s (" << (s.seconds > 0 ? double(s.delivered) / s.seconds : 0.0) << " fps)";
  if (s.dropped) line << ", " << s.dropped << " dropped";
  if (r.bad_images) line << ", " << r.bad_images << " image(s) failed";
  else if (s.unreadable) line << ", " << s.unreadable << " unreadable";
  if (!r.output.empty()) line << " -> " << r.output;
  if (r.partial) line << " (partial)";
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  std::fprintf(stderr, "%s\n", emaseg::printable(line.str()).c_str());
}

std::string streams_json(const StreamsReport& r, bool pretty) {
  nlohmann::ordered_json streams = nlohmann::ordered_json::array();
  long long frames = 0;
  for (const StreamReport& stream : r.streams) {
    const emaseg::StreamStats& s = stream.stats;
    frames += s.frames;
    streams.push_back({{"name", s.name},
                       {"input", stream.input},
                       {"state", emaseg::to_string(s.state)},
                       {"live", s.live},
                       {"frames", s.frames},
                       {"dropped", s.dropped},
                       {"unreadable", s.unreadable},
                       {"reconnects", s.reconnects},
                       {"fps", s.fps},
                       {"latency_ms", json_latency(s.latency_ms)},
                       {"output", text_or_null(stream.output)},
                       {"partial", stream.partial},
                       {"error", text_or_null(s.error)}});
  }
  const long rss = peak_rss_kb();
  const nlohmann::ordered_json report = {
      {"model", r.model},
      {"device", r.device},
      {"threads", r.threads},
      {"batch", r.batch},
      {"model_workers", r.workers},
      {"serving", text_or_null(r.serving)},
      {"frames", frames},
      {"seconds", r.seconds},
      {"fps", r.seconds > 0 ? double(frames) / r.seconds : 0.0},
      {"interrupted", r.interrupted},
      {"streams", streams},
      {"peak_rss_mb", rss >= 0 ? nlohmann::ordered_json(double(rss) / 1024.0) : nlohmann::ordered_json()},
  };
  return report.dump(pretty ? 2 : -1, ' ', true, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

void print_streams_summary(const StreamsReport& r) {
  long long frames = 0;
  int failed = 0;
  std::vector<std::string> lines;
  for (const StreamReport& stream : r.streams) {
    const emaseg::StreamStats& s = stream.stats;
    frames += s.frames;
    failed += s.state == emaseg::StreamState::kFailed;
    std::ostringstream text;
    text << std::fixed << std::setprecision(2);
    text << "  " << s.name << ": " << emaseg::to_string(s.state) << ", " << s.frames << " frame(s), " << s.fps << " fps";
    if (s.dropped) text << ", " << s.dropped << " dropped";
    if (s.unreadable) text << ", " << s.unreadable << " unreadable";
    if (s.reconnects) text << ", " << s.reconnects << " reconnect(s)";
    if (!stream.output.empty()) text << " -> " << stream.output << (stream.partial ? " (partial)" : "");
    lines.push_back(text.str());
  }
  std::ostringstream head;
  head << std::fixed << std::setprecision(2) << (r.interrupted ? "interrupted after " : "done: ") << r.streams.size()
       << " stream(s), " << frames << " frame(s) in " << r.seconds << " s ("
       << (r.seconds > 0 ? double(frames) / r.seconds : 0.0) << " fps in all)";
  if (failed) head << ", " << failed << " failed";
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  std::fprintf(stderr, "%s\n", emaseg::printable(head.str()).c_str());
  for (const std::string& line : lines) std::fprintf(stderr, "%s\n", emaseg::printable(line).c_str());
}

}  // namespace emaseg::cli
