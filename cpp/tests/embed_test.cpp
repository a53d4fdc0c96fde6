// emaseg_embed_model(): the embedded bytes equal the file, and a Segmenter built from them
// gives the same labels as one loaded from a path.
// Arguments: EMBEDDED_SOURCE.pt (the file that was compiled in)
#include "check.h"

#include "emaseg_embedded/test_model.h"

#include <emaseg/emaseg.h>

#include <fstream>
#include <iterator>

TEST(embedded_bytes_equal_the_file) {
  std::ifstream in(check::test_arg(0), std::ios::binary);
  const std::string file{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  CHECK(!file.empty());
  CHECK_EQ(emaseg_embedded::test_model_size(), file.size());
  CHECK(std::equal(file.begin(), file.end(),
                   reinterpret_cast<const char*>(emaseg_embedded::test_model_data())));
}

TEST(embedded_model_segments_like_the_file) {
  emaseg::Options options;
  options.threads = 1;
  const emaseg::Segmenter embedded(emaseg_embedded::test_model_data(),
                                   emaseg_embedded::test_model_size(), options);
  const emaseg::Segmenter from_file(check::test_arg(0), options);
  CHECK_EQ(embedded.metadata().json, from_file.metadata().json);
  cv::Mat image(16, 48, CV_8UC3);
  cv::randu(image, 0, 256);
  CHECK(cv::norm(embedded.segment(image), from_file.segment(image), cv::NORM_INF) == 0);
}
