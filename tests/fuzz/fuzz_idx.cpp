// data/idx.h: an IDX file (MNIST's format), as `coatnet pack idx` reads it.
#include <cstdint>
#include <exception>

#include "data/idx.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  coatnet::fuzz::InputFile file(data, size);
  try {
    coatnet::data::read_idx(file.path());
  } catch (const std::exception&) {
  }
  return 0;
}
