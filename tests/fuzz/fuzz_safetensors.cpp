// model/safetensors.h: a .safetensors file (JSON header, then tensor bytes), as --init-from,
// eval and export read it.
#include <cstdint>
#include <exception>

#include "fuzz_input.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  coatnet::fuzz::InputFile file(data, size);
  try {
    coatnet::model::read_safetensors(file.path());
  } catch (const std::exception&) {
  }
  return 0;
}
