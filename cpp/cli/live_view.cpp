#include "live_view.h"

#include <emaseg/emaseg.h>

#include <httplib.h>
#include <opencv2/imgcodecs.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace emaseg::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kBoundary = "emaseg-frame";
constexpr int kJpegQuality = 80;
constexpr std::size_t kServerThreads = 32;  // each MJPEG viewer holds one while it watches
// A page polling /streams/<name>.jpg counts as watching for this long after each request.
constexpr auto kPollGrace = std::chrono::seconds(2);
// A viewer waits this long for a new frame before it sends the last one again: a connection to a
// stream that ended stays alive, and one the viewer closed is noticed.
constexpr auto kResendAfter = std::chrono::seconds(1);

// The newest overlay of one stream and the JPEG made of it (by the first viewer who needs it).
struct Channel {
  std::mutex mutex;
  std::condition_variable fresh;
  cv::Mat frame;
  long long sequence = 0;  // of `frame`; 0: none yet
  std::shared_ptr<const std::string> jpeg;
  long long jpeg_sequence = 0;
  Clock::time_point published{};
  std::atomic<int> viewers{0};  // MJPEG connections
  std::atomic<Clock::rep> polled{0};  // last /streams/<name>.jpg request, as Clock ticks
};

std::string page_html(const std::vector<std::string>& names) {
  std::string figures;
  for (const std::string& name : names)  // names hold only [A-Za-z0-9._-]: nothing to escape
    figures += "  <figure><img id=\"img-" + name + "\" alt=\"" + name + "\"><figcaption><b>" + name +
               "</b> <span id=\"stats-" + name + "\">opening</span></figcaption></figure>\n";
  return R"(<!doctype html>
<html><head><meta charset="utf-8"><title>ema_seg live view</title>
<style>
  body { font-family: sans-serif; margin: 1em; background: #111; color: #eee; }
  #streams { display: flex; flex-wrap: wrap; gap: 1em; }
  figure { margin: 0; }
  img { max-width: 640px; width: 100%; background: #333; min-height: 120px; display: block; }
  .failed { color: #f66; } .reconnecting { color: #fc6; } .ended { color: #aaa; }
</style></head>
<body><h1>ema_seg</h1><div id="streams">
)" + figures + R"(</div>
<script>
// Each image polls its stream's newest frame: browsers open at most 6 connections to a server,
// so one MJPEG stream per camera would starve the others (MJPEG is at /streams/<name>.mjpg).
const names = )" + [&] {
    std::string list = "[";
    for (std::size_t i = 0; i < names.size(); ++i) list += (i ? ",\"" : "\"") + names[i] + "\"";
    return list + "]";
  }() + R"(;
const period = )" + "PERIOD_MS" + R"(;
// Each frame loads into an image of its own and replaces the shown one only once it has loaded:
// the view never blanks while a frame is on its way, nor on a failed request.
for (const name of names) {
  const poll = (delay) => setTimeout(() => {
    const next = new Image();
    next.alt = name;
    next.onload = () => {
      const shown = document.getElementById("img-" + name);
      next.id = shown.id;
      shown.replaceWith(next);
      poll(period);
    };
    next.onerror = () => poll(1000);
    next.src = "/streams/" + name + ".jpg?t=" + Date.now();
  }, delay);
  poll(0);
}
async function refresh() {
  try {
    const stats = await (await fetch("/stats.json")).json();
    for (const s of stats.streams) {
      const el = document.getElementById("stats-" + s.name);
      if (!el) continue;
      el.className = s.state;
      el.textContent = s.state + " \u00b7 " + s.frames + " frames \u00b7 " + s.fps.toFixed(1) + " fps" +
                       (s.reconnects ? " \u00b7 " + s.reconnects + " reconnects" : "") + (s.error ? " \u00b7 " + s.error : "");
    }
  } catch (e) {}
  setTimeout(refresh, 1000);
}
refresh();
</script></body></html>
)";
}

// "HOST:PORT", ":PORT" or "PORT" -> host, port.
std::pair<std::string, int> parse_address(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
  const std::string port = colon == std::string::npos ? address : address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "127.0.0.1";
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535)
    throw Error(Error::Kind::kArgument, "--serve expects [HOST:]PORT with PORT in 0..65535, got '" + address + "'");
  return {host, std::stoi(port)};
}

}  // namespace

struct LiveView::Impl {
  httplib::Server server;
  std::vector<std::string> names;
  std::vector<std::unique_ptr<Channel>> channels;
  std::function<std::string()> stats_json;
  std::chrono::duration<double> period;
  std::string page;
  std::string url;
  std::atomic<bool> stopping{false};
  std::thread thread;

  int find(const std::string& name) const {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == name) return int(i);
    return -1;
  }

  // The JPEG of the channel's newest frame, made once per frame. nullptr: no frame yet.
  static std::shared_ptr<const std::string> jpeg_of(Channel& c, long long& sequence) {
    std::unique_lock<std::mutex> lock(c.mutex);
    if (c.sequence == 0) return nullptr;
    if (c.jpeg_sequence != c.sequence) {
      const cv::Mat frame = c.frame;  // shared, immutable once published
      const long long current = c.sequence;
      lock.unlock();
      std::vector<unsigned char> bytes;
      cv::imencode(".jpg", frame, bytes, {cv::IMWRITE_JPEG_QUALITY, kJpegQuality});
      auto jpeg = std::make_shared<const std::string>(bytes.begin(), bytes.end());
      lock.lock();
      if (c.jpeg_sequence < current) {
        c.jpeg = std::move(jpeg);
        c.jpeg_sequence = current;
      }
    }
    sequence = c.jpeg_sequence;
    return c.jpeg;
  }

  void routes() {
    server.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(page, "text/html; charset=utf-8");
    });
    server.Get("/stats.json", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(stats_json(), "application/json");
    });
    server.Get(R"(/streams/([A-Za-z0-9._-]+)\.jpg)", [this](const httplib::Request& req, httplib::Response& res) {
      const int index = find(req.matches[1]);
      if (index < 0) return not_found(res, req.matches[1]);
      Channel& c = *channels[std::size_t(index)];
      c.polled = Clock::now().time_since_epoch().count();
      {  // a stream nobody watched has no frame yet: wait a little for the first
        std::unique_lock<std::mutex> lock(c.mutex);
        c.fresh.wait_for(lock, kPollGrace, [&] { return c.sequence != 0 || stopping; });
      }
      long long sequence = 0;
      const auto jpeg = jpeg_of(c, sequence);
      res.set_header("Cache-Control", "no-store");
      if (!jpeg) {
        res.status = 503;
        res.set_content("no frame of '" + names[std::size_t(index)] + "' yet\n", "text/plain");
        return;
      }
      res.set_content(*jpeg, "image/jpeg");
    });
    server.Get(R"(/streams/([A-Za-z0-9._-]+)\.mjpg)", [this](const httplib::Request& req, httplib::Response& res) {
      const int index = find(req.matches[1]);
      if (index < 0) return not_found(res, req.matches[1]);
      Channel& c = *channels[std::size_t(index)];
      ++c.viewers;
      res.set_header("Cache-Control", "no-store");
      res.set_chunked_content_provider(
          std::string("multipart/x-mixed-replace; boundary=") + kBoundary,
          [this, &c, sent = 0LL](std::size_t, httplib::DataSink& sink) mutable {
            {
              std::unique_lock<std::mutex> lock(c.mutex);
              c.fresh.wait_for(lock, kResendAfter, [&] { return stopping || (c.sequence != 0 && c.sequence != sent); });
            }
            if (stopping) return false;
            long long sequence = 0;
            const auto jpeg = jpeg_of(c, sequence);
            if (!jpeg) return true;  // nothing to show yet: asked again
            sent = sequence;
            const std::string head = std::string("--") + kBoundary + "\r\nContent-Type: image/jpeg\r\nContent-Length: " +
                                     std::to_string(jpeg->size()) + "\r\n\r\n";
            return sink.write(head.data(), head.size()) && sink.write(jpeg->data(), jpeg->size()) &&
                   sink.write("\r\n", 2);
          },
          [&c](bool) { --c.viewers; });
    });
  }

  void not_found(httplib::Response& res, const std::string& name) const {
    res.status = 404;
    std::string known;
    for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
    res.set_content("no stream '" + name + "'; streams: " + known + "\n", "text/plain");
  }
};

LiveView::LiveView(const std::string& address, double fps, std::vector<std::string> names,
                   std::function<std::string()> stats_json)
    : impl_(std::make_unique<Impl>()) {
  Impl& v = *impl_;
  v.names = std::move(names);
  for (std::size_t i = 0; i < v.names.size(); ++i) v.channels.push_back(std::make_unique<Channel>());
  v.stats_json = std::move(stats_json);
  v.period = std::chrono::duration<double>(1.0 / fps);
  v.page = page_html(v.names);
  v.page.replace(v.page.find("PERIOD_MS"), 9, std::to_string(int(1000.0 / fps)));
  v.server.new_task_queue = [] { return new httplib::ThreadPool(kServerThreads); };
  v.server.set_keep_alive_timeout(2);  // an idle browser connection delays the end of a run this long at most
  v.routes();

  const auto [host, port] = parse_address(address);
  errno = 0;
  int bound = port;
  if (port == 0) bound = v.server.bind_to_any_port(host);
  else if (!v.server.bind_to_port(host, port)) bound = -1;
  if (bound <= 0) {
    const int error = errno;
    const std::string where = host + ":" + std::to_string(port);
    throw Error(Error::Kind::kOutput,
                "--serve cannot listen on " + where + ": " +
                    (error == EADDRINUSE      ? std::string("the port is in use (pick another, or 0 for any free one)")
                     : error == EADDRNOTAVAIL ? std::string("the address is not one of this machine's")
                     : error != 0             ? std::string(std::strerror(error))
                                              : std::string("the host name does not resolve or the port is refused")));
  }
  const bool ipv6 = host.find(':') != std::string::npos;
  v.url = "http://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(bound) + "/";
  v.thread = std::thread([&v] { v.server.listen_after_bind(); });
  // stop() only stops a server that is running: a run that ends at once must not find it starting.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!v.server.is_running() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

LiveView::~LiveView() {
  Impl& v = *impl_;
  v.stopping = true;
  for (auto& c : v.channels) {
    std::lock_guard<std::mutex> lock(c->mutex);
    c->fresh.notify_all();
  }
  v.server.stop();
  if (v.thread.joinable()) v.thread.join();
}

std::string LiveView::url() const { return impl_->url; }

bool LiveView::wants(std::size_t stream) {
  Channel& c = *impl_->channels.at(stream);
  const auto now = Clock::now();
  const bool watched = c.viewers > 0 || now - Clock::time_point(Clock::duration(c.polled.load())) < kPollGrace;
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.sequence == 0) return true;  // one frame for everyone, even of a stream that ends unwatched
  return watched && now - c.published >= impl_->period;
}

void LiveView::publish(std::size_t stream, const cv::Mat& bgr) {
  Channel& c = *impl_->channels.at(stream);
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.frame = bgr;  // the caller does not write to it again
    ++c.sequence;
    c.published = Clock::now();
  }
  c.fresh.notify_all();
}

}  // namespace emaseg::cli
