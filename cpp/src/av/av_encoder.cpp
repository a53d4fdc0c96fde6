#include "av_encoder.h"

#include "av_common.h"

extern "C" {
#include <libavutil/opt.h>
}

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

namespace emaseg::av {
namespace {

constexpr std::array<const char*, 9> kPresets = {"ultrafast", "superfast", "veryfast", "faster", "fast",
                                                 "medium",    "slow",      "slower",   "veryslow"};

struct DictionaryOwner {
  AVDictionary* dict = nullptr;
  ~DictionaryOwner() { av_dict_free(&dict); }
};

}  // namespace

struct Encoder::Impl {
  std::string file;
  cv::Size size;
  AVFormatContext* muxer = nullptr;  // freed in the destructor (output contexts have no RAII type)
  CodecPtr codec;
  AVStream* stream = nullptr;
  FramePtr frame = make_frame();
  PacketPtr packet = make_packet();
  SwsPtr to_yuv;
  long long next_pts = 0;
  bool finished = false;

  ~Impl() {
    if (muxer != nullptr) {
      if (muxer->pb != nullptr) avio_closep(&muxer->pb);
      avformat_free_context(muxer);
    }
  }

  Error error(const std::string& what, int code) const {
    return Error(Error::Kind::kOutput, "cannot write video '" + file + "': " + what + av::error_text(code));
  }

  // Sends `f` (nullptr: flush) and writes every packet the encoder has ready.
  void send(const AVFrame* f) {
    int ret = avcodec_send_frame(codec.get(), f);
    if (ret < 0) throw error("the encoder failed: ", ret);
    while ((ret = avcodec_receive_packet(codec.get(), packet.get())) >= 0) {
      av_packet_rescale_ts(packet.get(), codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      ret = av_interleaved_write_frame(muxer, packet.get());  // takes the packet's reference
      if (ret < 0) throw error("", ret);
    }
    if (ret != AVERROR(EAGAIN) && ret != AVERROR_EOF) throw error("the encoder failed: ", ret);
    if (muxer->pb != nullptr && muxer->pb->error < 0) throw error("", muxer->pb->error);
  }

  void next_frame() {
    const int ret = av_frame_make_writable(frame.get());  // the encoder may still hold the last one
    if (ret < 0) throw error("", ret);
  }
};

Encoder::Encoder(const std::string& file, double fps, cv::Size size, const VideoOutputOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.file = file;
  m.size = size;
  const bool h264 = options.codec == "h264";
  if (!h264 && options.codec != "mp4v")
    throw Error(Error::Kind::kArgument, "codec must be h264 or mp4v, got '" + options.codec + "'");
  if (h264 && std::find(kPresets.begin(), kPresets.end(), std::string_view(options.preset)) == kPresets.end())
    throw Error(Error::Kind::kArgument, "preset must be one of ultrafast, superfast, veryfast, faster, fast, "
                                        "medium, slow, slower, veryslow; got '" + options.preset + "'");
  if (h264 && !(options.crf >= 0 && options.crf <= 51))
    throw Error(Error::Kind::kArgument, "crf must lie in 0..51, got " + std::to_string(options.crf));
  if (size.width <= 0 || size.height <= 0 || size.width % 2 != 0 || size.height % 2 != 0)
    throw Error(Error::Kind::kArgument, "the encoder takes even frame sizes only");

  int ret = avformat_alloc_output_context2(&m.muxer, nullptr, nullptr, file.c_str());
  if (ret < 0 || m.muxer == nullptr) throw m.error("FFmpeg has no muxer for its extension: ", ret);
  const AVCodec* encoder = h264 ? avcodec_find_encoder_by_name("libx264") : avcodec_find_encoder(AV_CODEC_ID_MPEG4);
  if (encoder == nullptr)
    throw Error(Error::Kind::kOutput, "cannot write video '" + file + "': this FFmpeg has no " +
                                          (h264 ? "libx264 (H.264)" : "MPEG-4") + " encoder");
  m.codec.reset(avcodec_alloc_context3(encoder));
  if (!m.codec) throw std::bad_alloc();
  AVCodecContext* c = m.codec.get();
  c->width = size.width;
  c->height = size.height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  const AVRational rate = av_d2q(fps > 0 ? fps : 30.0, 100000);
  c->framerate = rate;
  c->time_base = av_inv_q(rate);
  c->thread_count = std::max(1, options.threads);
  c->color_range = AVCOL_RANGE_MPEG;
  c->colorspace = static_cast<AVColorSpace>(options.colour.matrix);
  c->color_primaries = static_cast<AVColorPrimaries>(options.colour.primaries);
  c->color_trc = static_cast<AVColorTransferCharacteristic>(options.colour.transfer);
  if ((m.muxer->oformat->flags & AVFMT_GLOBALHEADER) != 0) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  DictionaryOwner codec_options;
  if (h264) {
    av_dict_set(&codec_options.dict, "preset", options.preset.c_str(), 0);
    av_dict_set_int(&codec_options.dict, "crf", options.crf, 0);
  } else {  // MPEG-4 Part 2 at a fixed quantiser: about the quality of H.264 at crf 23
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * 3;
  }
  ret = avcodec_open2(c, encoder, &codec_options.dict);
  if (ret < 0) throw m.error(std::string("cannot open the ") + encoder->name + " encoder: ", ret);

  m.stream = avformat_new_stream(m.muxer, nullptr);
  if (m.stream == nullptr) throw std::bad_alloc();
  m.stream->time_base = c->time_base;
  m.stream->avg_frame_rate = rate;
  ret = avcodec_parameters_from_context(m.stream->codecpar, c);
  if (ret < 0) throw m.error("", ret);
  ret = avio_open2(&m.muxer->pb, file.c_str(), AVIO_FLAG_WRITE, nullptr, nullptr);
  if (ret < 0) throw m.error("", ret);
  DictionaryOwner muxer_options;
  // The index before the media: browsers start playing before the whole file is there. The mp4
  // muxer moves it at the end, in a second pass over the file.
  const std::string format = m.muxer->oformat->name;
  if (format.find("mp4") != std::string::npos || format.find("mov") != std::string::npos)
    av_dict_set(&muxer_options.dict, "movflags", "+faststart", 0);
  ret = avformat_write_header(m.muxer, &muxer_options.dict);
  if (ret < 0) throw m.error("", ret);

  m.frame->format = AV_PIX_FMT_YUV420P;
  m.frame->width = size.width;
  m.frame->height = size.height;
  if (av_frame_get_buffer(m.frame.get(), 0) < 0) throw std::bad_alloc();
  // BGR frames: swscale's conversion, as OpenCV's writer did, in the matrix the tags say.
  m.to_yuv.reset(sws_getContext(size.width, size.height, AV_PIX_FMT_BGR24, size.width, size.height,
                                AV_PIX_FMT_YUV420P, SWS_BICUBIC, nullptr, nullptr, nullptr));
  if (!m.to_yuv) throw std::bad_alloc();
  const int* coefficients = sws_getCoefficients(options.colour.matrix == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_ITU601);
  sws_setColorspaceDetails(m.to_yuv.get(), coefficients, 0, coefficients, 0, 0, 1 << 16, 1 << 16);
}

Encoder::~Encoder() = default;

cv::Size Encoder::size() const { return impl_->size; }

void Encoder::write_bgr(const cv::Mat& bgr) {
  Impl& m = *impl_;
  m.next_frame();
  const std::uint8_t* planes[1] = {bgr.data};
  const int strides[1] = {static_cast<int>(bgr.step[0])};
  sws_scale(m.to_yuv.get(), planes, strides, 0, bgr.rows, m.frame->data, m.frame->linesize);
  m.frame->pts = m.next_pts++;
  m.send(m.frame.get());
}

void Encoder::write_i420(const cv::Mat& i420) {
  Impl& m = *impl_;
  m.next_frame();
  const int w = m.size.width, h = m.size.height;
  const std::uint8_t* y = i420.data;
  const std::uint8_t* u = y + std::size_t(w) * h;
  const std::uint8_t* v = u + std::size_t(w / 2) * (h / 2);
  for (int row = 0; row < h; ++row)
    std::memcpy(m.frame->data[0] + std::size_t(row) * m.frame->linesize[0], y + std::size_t(row) * w, w);
  for (int row = 0; row < h / 2; ++row) {
    std::memcpy(m.frame->data[1] + std::size_t(row) * m.frame->linesize[1], u + std::size_t(row) * (w / 2), w / 2);
    std::memcpy(m.frame->data[2] + std::size_t(row) * m.frame->linesize[2], v + std::size_t(row) * (w / 2), w / 2);
  }
  m.frame->pts = m.next_pts++;
  m.send(m.frame.get());
}

void Encoder::finish() {
  Impl& m = *impl_;
  if (m.finished) return;
  m.finished = true;
  m.send(nullptr);
  int ret = av_write_trailer(m.muxer);
  if (ret < 0) throw m.error("", ret);
  if (m.muxer->pb->error < 0) throw m.error("", m.muxer->pb->error);
  ret = avio_closep(&m.muxer->pb);
  if (ret < 0) throw m.error("", ret);
}

}  // namespace emaseg::av
