// How ema_seg opens videos and writes overlay videos, the same for one input (run.cpp) and for
// several streams (run_streams.cpp).
#pragma once

#include "options.h"

#include <emaseg/outputs.h>
#include <emaseg/pipeline.h>

namespace emaseg::cli {

constexpr double kDefaultFps = 30.0;  // for cameras and streams that do not report one
// The video path's threads, explicit so that they do not compete with the model's: one decoding
// thread and one sink thread (overlay, libx264) per input, in the background beside the model
// (PipelineOptions::background_*), so that they fill the time its threads leave the cores idle.
constexpr int kDecoderThreads = 1;
constexpr int kEncoderThreads = 1;

// Stall timeout, hardware decoding, decoder threads; Ctrl-C ends a blocking open or read.
emaseg::VideoOptions video_options(const CliOptions& o);
// Overlay opacity and the video's codec, preset and CRF; no output named yet.
emaseg::OutputOptions video_output_options(const CliOptions& o);

}  // namespace emaseg::cli
