// data/pack.h: a JFT-style list file (path and labels per line), as `coatnet pack jft` reads it.
#include <cstdint>
#include <exception>

#include "data/pack.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  coatnet::fuzz::InputFile file(data, size);
  try {
    coatnet::data::list_jft(file.path(), 1000);
  } catch (const std::exception&) {
  }
  return 0;
}
