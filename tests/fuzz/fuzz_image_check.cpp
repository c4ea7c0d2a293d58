// data/image_check.h: a source image (JPEG, PNG or anything else), as `coatnet pack` checks it.
#include <cstdint>
#include <exception>
#include <vector>

#include "data/image_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static coatnet::data::ImageChecker checker([] {
    coatnet::data::ImageCheckOptions o;
    o.max_side = 64;  // the downscale and re-encode paths too
    return o;
  }());
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    checker.check(bytes);
    coatnet::data::is_progressive_jpeg(bytes);
  } catch (const std::exception&) {
  }
  return 0;
}
