// --serve: a live view of every stream over HTTP (cpp-httplib), on its own threads.
//   /                     a page with every stream by name and its stats, refreshed live
//   /streams/<name>.mjpg  the stream's overlay as multipart MJPEG (VLC, ffplay, browsers)
//   /streams/<name>.jpg   its newest overlay frame
//   /stats.json           the per-stream stats of --json, now
// The run publishes a stream's first overlay, then overlays only while someone watches that
// stream, at most --serve-fps per second; viewers encode JPEGs on their own threads, so a slow viewer never slows the model.
#pragma once

#include <opencv2/core.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace emaseg::cli {

constexpr double kServeFps = 5.0;

class LiveView {
 public:
  // Listens on `address` ("HOST:PORT", ":PORT" or "PORT"; HOST defaults to 127.0.0.1, port 0
  // takes any free one). `stats_json` gives /stats.json's body. Throws Error(kArgument) for a
  // malformed address, Error(kOutput) when it cannot listen there (the port is in use).
  LiveView(const std::string& address, double fps, std::vector<std::string> names,
           std::function<std::string()> stats_json);
  LiveView(const LiveView&) = delete;
  LiveView& operator=(const LiveView&) = delete;
  ~LiveView();  // stops serving: open viewer connections end

  std::string url() const;  // "http://127.0.0.1:8080/"
  // True for a stream's first frame, and then while someone watches it and its last published
  // frame is 1/fps old: make the overlay and publish() it.
  bool wants(std::size_t stream);
  void publish(std::size_t stream, const cv::Mat& bgr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emaseg::cli
