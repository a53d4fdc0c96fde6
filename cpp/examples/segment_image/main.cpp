// segment_image IMAGE OVERLAY.png [MODEL.pt]
//
// Segments one image, writes the overlay and prints each class's share of the pixels.
// Without MODEL.pt it uses the model compiled in with -DEMBED_MODEL=FILE.pt.
#include <emaseg/emaseg.h>

#include <opencv2/imgcodecs.hpp>

#include <cstdio>
#include <memory>
#include <vector>

#ifdef SEGMENT_IMAGE_EMBEDDED_MODEL
#include "emaseg_embedded/model.h"
#endif

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: segment_image IMAGE OVERLAY.png [MODEL.pt]\n");
    return 2;
  }
  try {
    std::unique_ptr<emaseg::Segmenter> segmenter;
    if (argc == 4) {
      segmenter = std::make_unique<emaseg::Segmenter>(argv[3]);
    } else {
#ifdef SEGMENT_IMAGE_EMBEDDED_MODEL
      segmenter = std::make_unique<emaseg::Segmenter>(emaseg_embedded::model_data(),
                                                      emaseg_embedded::model_size());
#else
      std::fprintf(stderr, "segment_image: no MODEL.pt given and none embedded\n");
      return 2;
#endif
    }
    const cv::Mat image = cv::imread(argv[1], cv::IMREAD_COLOR);
    if (image.empty()) {
      std::fprintf(stderr, "segment_image: cannot read %s\n", argv[1]);
      return 1;
    }
    const cv::Mat labels = segmenter->segment(image);
    if (!cv::imwrite(argv[2], segmenter->overlay(image, labels, 0.5))) {
      std::fprintf(stderr, "segment_image: cannot write %s\n", argv[2]);
      return 1;
    }
    const emaseg::Metadata& meta = segmenter->metadata();
    std::vector<long> counts(meta.num_classes, 0);
    for (auto it = labels.begin<uchar>(); it != labels.end<uchar>(); ++it) ++counts[*it];
    for (int c = 0; c < meta.num_classes; ++c)
      std::printf("%s %.4f\n", meta.class_names[c].c_str(), double(counts[c]) / labels.total());
  } catch (const emaseg::Error& e) {
    std::fprintf(stderr, "segment_image: %s\n", e.what());
    return 1;
  }
  return 0;
}
