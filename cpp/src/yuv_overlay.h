// The overlay blended on a decoded frame's own I420 planes: the video path needs no BGR frame
// for its output and no second full-frame conversion (FrameSource::read's i420).
#pragma once

#include "emaseg/pipeline.h"

#include <array>
#include <vector>

namespace emaseg::detail {

// overlay() in YUV: luma per pixel, chroma per 2x2 block with the mean of its four labels'
// colours, the palette converted to limited-range YUV with the frame's matrix (BT.709 for
// colour.matrix 1, else BT.601). The same blend as overlay()'s up to rounding, RGB clipping and
// 4:2:0 chroma at label edges (tests/test_video_path.py bounds the difference).
cv::Mat overlay_i420(const cv::Mat& i420, const cv::Mat& labels,
                     const std::vector<std::array<std::uint8_t, 3>>& palette, double alpha,
                     const VideoColour& colour);

}  // namespace emaseg::detail
