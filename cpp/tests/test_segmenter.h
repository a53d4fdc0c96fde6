// The segmenter most runtime tests share: the contract model named by test_arg(0), loaded once
// per test binary, on one thread (the tests run beside others on 2 cores).
#pragma once

#include "check.h"

#include <emaseg/emaseg.h>

namespace check {

inline const emaseg::Segmenter& segmenter() {
  static const emaseg::Segmenter seg = [] {
    emaseg::Options options;
    options.threads = 1;
    return emaseg::Segmenter(test_arg(0), options);
  }();
  return seg;
}

}  // namespace check
