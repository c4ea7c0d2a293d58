// MNIST-style IDX files (images: magic 0x00000803, N×H×W uint8; labels: 0x00000801, N uint8),
// gzipped or not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coatnet::data {

struct IdxArray {
  std::vector<int64_t> dims;  // dims[0] = number of items
  std::vector<uint8_t> data;
};

// Throws std::runtime_error naming the file: wrong magic, non-uint8 data, truncated payload.
IdxArray read_idx(const std::string& path);

}  // namespace coatnet::data
