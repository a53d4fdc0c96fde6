// open_video: video files and network streams decoded by libavformat/libavcodec directly.
// The BGR frames are byte for byte those of cv::VideoCapture (OpenCV's FFmpeg backend, the
// reference pipeline's input): the same swscale conversion at the decoder's coded size. Beside
// them a yuv420p frame keeps its own planes, so that the overlay video needs no second
// conversion. Every blocking call is bounded by a Watchdog (Ctrl-C, --stall-timeout).
#include "emaseg/pipeline.h"

#include "av_common.h"
#include "output_files.h"

extern "C" {
#include <libavutil/hwcontext.h>
#include <libavutil/pixdesc.h>
}

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

namespace emaseg {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxConsecutiveFailures = 8;  // unreadable packets in a row that end a file
constexpr double kMaxFps = 1000.0;          // beyond it a reported frame rate is taken as unknown

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

bool is_live_scheme(const std::string& url) {
  const std::string text = lower(url);
  for (const char* scheme : {"rtsp", "rtsps", "rtmp", "rtp", "udp", "tcp", "srt"})
    if (text.rfind(std::string(scheme) + "://", 0) == 0) return true;
  return false;
}

std::string format_seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", seconds);
  return text;
}

// The hardware decoder to use: none, or the device type --hwaccel asks for.
AVHWDeviceType hw_type(const VideoOptions& options) {
  if (options.hwaccel == "none") return AV_HWDEVICE_TYPE_NONE;
  if (options.hwaccel == "cuda") return AV_HWDEVICE_TYPE_CUDA;
  if (options.hwaccel == "vaapi") return AV_HWDEVICE_TYPE_VAAPI;
  if (options.hwaccel == "auto")  // NVDEC beside a CUDA model; software otherwise
    return options.device.rfind("cuda", 0) == 0 ? AV_HWDEVICE_TYPE_CUDA : AV_HWDEVICE_TYPE_NONE;
  throw Error(Error::Kind::kArgument,
              "hwaccel must be none, auto, cuda or vaapi, got '" + options.hwaccel + "'");
}

class AvVideoSource final : public FrameSource {
 public:
  AvVideoSource(const std::string& url, std::string description, std::string file, const VideoOptions& options)
      : description_(std::move(description)), file_(std::move(file)), watchdog_(options.stall_timeout, options.stop) {
    open_input(url);
    open_decoder(options);
    const AVStream* stream = input_->streams[stream_index_];
    fps_ = av_q2d(stream->avg_frame_rate);
    if (!(fps_ > 0)) fps_ = av_q2d(stream->r_frame_rate);
    frame_count_ = stream->nb_frames > 0 ? stream->nb_frames : estimated_frames();
    live_ = file_.empty() && (frame_count_ < 0 || is_live_scheme(url));
    colour_.matrix = stream->codecpar->color_space;
    colour_.primaries = stream->codecpar->color_primaries;
    colour_.transfer = stream->codecpar->color_trc;
    // The first frame proves the input decodes and gives the true frame size.
    if (!next(first_, &first_i420_)) {
      if (watchdog_.reason() == av::Watchdog::Reason::kStopped)
        throw Error(Error::Kind::kInput, description_ + ": interrupted while reading its first frame");
      throw Error(Error::Kind::kInput, description_ + " opened but no frame could be decoded");
    }
    size_ = first_.size();
  }

  Status read(cv::Mat& frame, std::string& name) override { return read(frame, nullptr, name); }
  Status read(cv::Mat& frame, cv::Mat& i420, std::string& name) override { return read(frame, &i420, name); }

  bool live() const override { return live_; }
  double fps() const override { return fps_ > 0 && fps_ <= kMaxFps ? fps_ : 0.0; }
  long long frame_count() const override { return frame_count_; }
  cv::Size frame_size() const override { return size_; }
  std::string description() const override { return description_; }
  std::vector<std::string> files() const override {
    return file_.empty() ? std::vector<std::string>{} : std::vector<std::string>{file_};
  }
  VideoColour colour() const override { return colour_; }
  std::string decoder() const override { return decoder_; }

 private:
  Status read(cv::Mat& frame, cv::Mat* i420, std::string& name) {
    name.clear();
    if (i420 != nullptr) i420->release();
    if (pending_unreadable_ > 0) {
      --pending_unreadable_;
      return Status::kUnreadable;
    }
    if (!first_.empty()) {
      frame = std::move(first_);
      first_.release();
      if (i420 != nullptr) *i420 = std::move(first_i420_);
      first_i420_.release();
      return Status::kFrame;
    }
    if (ended_) return Status::kEnd;
    cv::Mat decoded, planes;
    if (!next(decoded, i420 != nullptr ? &planes : nullptr)) {
      ended_ = true;
      return pending_unreadable_ > 0 ? read(frame, i420, name) : Status::kEnd;
    }
    if (pending_unreadable_ > 0) {  // failures before this frame: report them first
      first_ = std::move(decoded);
      first_i420_ = std::move(planes);
      --pending_unreadable_;
      return Status::kUnreadable;
    }
    frame = std::move(decoded);
    if (i420 != nullptr) *i420 = std::move(planes);
    return Status::kFrame;
  }

  void open_input(const std::string& url) {
    AVFormatContext* context = avformat_alloc_context();
    if (context == nullptr) throw std::bad_alloc();
    context->interrupt_callback = watchdog_.callback();
    watchdog_.arm();
    // On failure avformat_open_input frees the context itself.
    int ret = avformat_open_input(&context, url.c_str(), nullptr, nullptr);
    if (ret < 0) throw open_error(ret, "cannot open ");
    input_.reset(context);
    watchdog_.arm();
    ret = avformat_find_stream_info(context, nullptr);
    // Interrupted, it may still return what it found; the input is not usable then.
    if (ret < 0 || watchdog_.reason() != av::Watchdog::Reason::kNone) throw open_error(ret, "cannot read ");
    stream_index_ = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (stream_index_ < 0) throw Error(Error::Kind::kInput, description_ + " has no video stream");
  }

  Error open_error(int code, const std::string& verb) const {
    switch (watchdog_.reason()) {
      case av::Watchdog::Reason::kStopped:
        return Error(Error::Kind::kInput, description_ + ": interrupted while opening it");
      case av::Watchdog::Reason::kStalled:
        return Error(Error::Kind::kInput, description_ + " gave no data for " + format_seconds(watchdog_.timeout()) +
                                              " s while opening (--stall-timeout); is the server up?");
      case av::Watchdog::Reason::kNone: break;
    }
    const bool url = file_.empty();
    return Error(Error::Kind::kInput, verb + description_ + ": " + av::error_text(code) +
                                          (url ? " (check the address and that the server is reachable)"
                                               : " (not a video format FFmpeg can read?)"));
  }

  void open_decoder(const VideoOptions& options) {
    const AVCodecParameters* par = input_->streams[stream_index_]->codecpar;
    const AVCodec* codec = avcodec_find_decoder(par->codec_id);
    if (codec == nullptr)
      throw Error(Error::Kind::kInput, description_ + ": FFmpeg has no decoder for its " +
                                           avcodec_get_name(par->codec_id) + " video");
    decoder_context_.reset(avcodec_alloc_context3(codec));
    if (!decoder_context_) throw std::bad_alloc();
    AVCodecContext* c = decoder_context_.get();
    if (avcodec_parameters_to_context(c, par) < 0) throw std::bad_alloc();
    // Explicit threads: the decoder's default, one per core, competes with the model's.
    c->thread_count = std::max(1, options.threads);
    c->pkt_timebase = input_->streams[stream_index_]->time_base;
    decoder_ = std::string(codec->name) + " (" + std::to_string(c->thread_count) + " thread" +
               (c->thread_count > 1 ? "s" : "") + ")";
    setup_hwaccel(codec, options);
    const int ret = avcodec_open2(c, codec, nullptr);
    if (ret < 0)
      throw Error(hw_pix_fmt_ != AV_PIX_FMT_NONE ? Error::Kind::kDevice : Error::Kind::kInput,
                  description_ + ": cannot open its " + codec->name + " decoder: " + av::error_text(ret));
  }

  void setup_hwaccel(const AVCodec* codec, const VideoOptions& options) {
    const AVHWDeviceType type = hw_type(options);
    if (type == AV_HWDEVICE_TYPE_NONE) return;
    const bool asked = options.hwaccel != "auto";  // auto falls back to software quietly
    const std::string name = av_hwdevice_get_type_name(type);
    for (int i = 0;; ++i) {
      const AVCodecHWConfig* config = avcodec_get_hw_config(codec, i);
      if (config == nullptr) break;
      if ((config->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) != 0 && config->device_type == type) {
        hw_pix_fmt_ = config->pix_fmt;
        break;
      }
    }
    if (hw_pix_fmt_ == AV_PIX_FMT_NONE) {
      if (asked)
        throw Error(Error::Kind::kDevice, "--hwaccel " + options.hwaccel + ": FFmpeg's " + codec->name +
                                              " decoder cannot decode on " + name + "; use --hwaccel none");
      return;
    }
    AVBufferRef* device = nullptr;
    const int ret = av_hwdevice_ctx_create(&device, type, nullptr, nullptr, 0);
    if (ret < 0) {
      hw_pix_fmt_ = AV_PIX_FMT_NONE;
      if (asked)
        throw Error(Error::Kind::kDevice, "--hwaccel " + options.hwaccel + ": no " + name +
                                              " device to decode on (" + av::error_text(ret) +
                                              "); use --hwaccel none or auto");
      return;
    }
    hw_device_.reset(device);
    decoder_context_->hw_device_ctx = av_buffer_ref(device);
    decoder_context_->opaque = this;
    decoder_context_->get_format = [](AVCodecContext* c, const AVPixelFormat* formats) {
      const auto* self = static_cast<const AvVideoSource*>(c->opaque);
      for (const AVPixelFormat* f = formats; *f != AV_PIX_FMT_NONE; ++f)
        if (*f == self->hw_pix_fmt_) return *f;
      return formats[0];  // the decoder cannot use the device for this stream: software
    };
    decoder_ = std::string(codec->name) + " on " + name;
  }

  long long estimated_frames() const {
    double seconds = double(input_->duration) / AV_TIME_BASE;
    const AVStream* stream = input_->streams[stream_index_];
    if (!(seconds > 0)) seconds = double(stream->duration) * av_q2d(stream->time_base);
    const double frames = std::floor(seconds * fps_ + 0.5);
    return frames > 0 ? static_cast<long long>(frames) : -1;
  }

  // Decodes the next frame into BGR (and its I420 planes when asked and available). False at
  // the end of the input, or when the watchdog's stop flag ended the wait.
  bool next(cv::Mat& frame, cv::Mat* i420) {
    AVCodecContext* c = decoder_context_.get();
    int failures = 0;
    while (true) {
      int ret = avcodec_receive_frame(c, decoded_.get());
      if (ret == 0) {
        pending_unreadable_ += failures;
        convert(frame, i420);
        av_frame_unref(decoded_.get());
        return true;
      }
      if (ret == AVERROR_EOF) return end_of_input();
      if (ret != AVERROR(EAGAIN)) {  // a damaged frame; the decoder resynchronises
        if (++failures >= kMaxConsecutiveFailures) return false;
        continue;
      }
      if (draining_) return end_of_input();
      watchdog_.arm();
      ret = av_read_frame(input_.get(), packet_.get());
      if (ret == AVERROR(EAGAIN)) continue;
      if (ret < 0) {
        if (watchdog_.reason() == av::Watchdog::Reason::kStopped) return false;
        if (watchdog_.reason() == av::Watchdog::Reason::kStalled)
          throw Error(Error::Kind::kInput, description_ + " stalled: no data for " +
                                               format_seconds(watchdog_.timeout()) + " s (--stall-timeout)");
        if (ret != AVERROR_EOF && live_)  // said once the frames the decoder holds are out
          broke_off_ = description_ + " broke off: " + av::error_text(ret);
        else if (ret != AVERROR_EOF && ++failures < kMaxConsecutiveFailures)
          continue;  // a damaged file
        draining_ = true;  // the end: collect the frames the decoder still holds
        avcodec_send_packet(c, nullptr);
        continue;
      }
      if (packet_->stream_index == stream_index_) {
        ret = avcodec_send_packet(c, packet_.get());
        if (ret < 0 && ret != AVERROR(EAGAIN) && ++failures >= kMaxConsecutiveFailures) {
          av_packet_unref(packet_.get());
          return false;
        }
      }
      av_packet_unref(packet_.get());
    }
  }

  bool end_of_input() const {
    if (!broke_off_.empty()) throw Error(Error::Kind::kInput, broke_off_);
    return false;
  }

  void convert(cv::Mat& frame, cv::Mat* i420) {
    AVFrame* picture = decoded_.get();
    int buffer_width = decoder_context_->coded_width, buffer_height = decoder_context_->coded_height;
    if (picture->format == hw_pix_fmt_ && hw_pix_fmt_ != AV_PIX_FMT_NONE) {
      av_frame_unref(transferred_.get());
      const int ret = av_hwframe_transfer_data(transferred_.get(), picture, 0);
      if (ret < 0)
        throw Error(Error::Kind::kDevice, description_ + ": cannot copy a decoded frame from the " +
                                              decoder_ + " decoder: " + av::error_text(ret));
      picture = transferred_.get();
      buffer_width = picture->width;
      buffer_height = picture->height;
    }
    const int width = picture->width, height = picture->height;
    // As cv::VideoCapture does: swscale at the coded size, SWS_BICUBIC, into a buffer laid out as
    // av_frame_get_buffer(32) lays it out; the same conversion path gives the same bytes.
    if (!sws_ || sws_size_ != cv::Size(buffer_width, buffer_height) || sws_format_ != picture->format) {
      sws_.reset(sws_getContext(buffer_width, buffer_height, static_cast<AVPixelFormat>(picture->format),
                                buffer_width, buffer_height, AV_PIX_FMT_BGR24, SWS_BICUBIC, nullptr, nullptr,
                                nullptr));
      if (!sws_)
        throw Error(Error::Kind::kInput, description_ + ": cannot convert its " +
                                             av_get_pix_fmt_name(static_cast<AVPixelFormat>(picture->format)) +
                                             " frames to BGR");
      sws_size_ = cv::Size(buffer_width, buffer_height);
      sws_format_ = picture->format;
      av_frame_unref(bgr_.get());
    }
    if (buffer_width == width && (buffer_width * 3) % 32 == 0) {
      // Rows of 32-byte multiples (1280, 1920, 3840 wide): that layout is a plain cv::Mat's, so
      // swscale writes the frame in place and no copy follows.
      cv::Mat buffer(buffer_height, buffer_width, CV_8UC3);
      std::uint8_t* planes[4] = {buffer.data, nullptr, nullptr, nullptr};
      const int strides[4] = {buffer_width * 3, 0, 0, 0};
      sws_scale(sws_.get(), picture->data, picture->linesize, 0, buffer_height, planes, strides);
      frame = buffer.rowRange(0, height);
    } else {
      if (bgr_->data[0] == nullptr) {
        bgr_->format = AV_PIX_FMT_BGR24;
        bgr_->width = buffer_width;
        bgr_->height = buffer_height;
        if (av_frame_get_buffer(bgr_.get(), 32) < 0) throw std::bad_alloc();
      }
      sws_scale(sws_.get(), picture->data, picture->linesize, 0, buffer_height, bgr_->data, bgr_->linesize);
      cv::Mat(height, width, CV_8UC3, bgr_->data[0], static_cast<std::size_t>(bgr_->linesize[0])).copyTo(frame);
    }
    if (i420 != nullptr) copy_planes(*picture, *i420);
  }

  // The frame's I420 planes (Y, then U, then V, as cv::COLOR_YUV2BGR_I420 has them) for 8-bit
  // 4:2:0 in limited range at an even size; left empty otherwise.
  static void copy_planes(const AVFrame& picture, cv::Mat& i420) {
    const int w = picture.width, h = picture.height;
    const bool limited = picture.color_range != AVCOL_RANGE_JPEG;
    const bool planar = picture.format == AV_PIX_FMT_YUV420P, nv12 = picture.format == AV_PIX_FMT_NV12;
    if (w % 2 != 0 || h % 2 != 0 || !limited || !(planar || nv12)) return;
    i420.create(h * 3 / 2, w, CV_8UC1);
    std::uint8_t* y = i420.data;
    std::uint8_t* u = y + std::size_t(w) * h;
    std::uint8_t* v = u + std::size_t(w / 2) * (h / 2);
    for (int row = 0; row < h; ++row)
      std::memcpy(y + std::size_t(row) * w, picture.data[0] + std::size_t(row) * picture.linesize[0], w);
    for (int row = 0; row < h / 2; ++row) {
      std::uint8_t* u_row = u + std::size_t(row) * (w / 2);
      std::uint8_t* v_row = v + std::size_t(row) * (w / 2);
      if (planar) {
        std::memcpy(u_row, picture.data[1] + std::size_t(row) * picture.linesize[1], w / 2);
        std::memcpy(v_row, picture.data[2] + std::size_t(row) * picture.linesize[2], w / 2);
      } else {  // NV12, as hardware decoders give it: U and V interleaved
        const std::uint8_t* uv = picture.data[1] + std::size_t(row) * picture.linesize[1];
        for (int x = 0; x < w / 2; ++x) {
          u_row[x] = uv[2 * x];
          v_row[x] = uv[2 * x + 1];
        }
      }
    }
  }

  std::string description_;
  std::string file_;
  av::Watchdog watchdog_;
  av::InputPtr input_;
  av::CodecPtr decoder_context_;
  av::BufferPtr hw_device_;
  AVPixelFormat hw_pix_fmt_ = AV_PIX_FMT_NONE;
  std::string decoder_;
  int stream_index_ = -1;
  av::PacketPtr packet_ = av::make_packet();
  av::FramePtr decoded_ = av::make_frame();
  av::FramePtr transferred_ = av::make_frame();
  av::FramePtr bgr_ = av::make_frame();
  av::SwsPtr sws_;
  cv::Size sws_size_;
  int sws_format_ = -1;
  bool draining_ = false;
  std::string broke_off_;  // a live stream's read error, thrown at the end of its frames

  double fps_ = 0;
  long long frame_count_ = -1;
  bool live_ = false;
  VideoColour colour_;
  cv::Size size_;
  cv::Mat first_, first_i420_;
  int pending_unreadable_ = 0;
  bool ended_ = false;
};


}  // namespace

std::unique_ptr<FrameSource> open_video(const std::string& path_or_url, const VideoOptions& options) {
  if (!(options.stall_timeout >= 0))
    throw Error(Error::Kind::kArgument, "stall_timeout must be >= 0 seconds (0: wait forever)");
  hw_type(options);  // a bad hwaccel name is the caller's error, before anything opens
  av::quiet_logs();
  const std::string file = detail::local_file(path_or_url);
  const bool url = file.empty();
  const std::string description = (url ? "stream '" : "video '") + path_or_url + "'";
  if (!url && fs::is_directory(detail::input_status(file, description)))
    throw Error(Error::Kind::kInput, description + " is a folder; use --images for folders");
  return std::make_unique<AvVideoSource>(path_or_url, description, file, options);
}

}  // namespace emaseg
