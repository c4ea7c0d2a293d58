// checkpoint/manifest.h: a manifest.yaml as a resume or `ckpt verify` reads it.
#include <cstdint>
#include <exception>
#include <string>

#include "checkpoint/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    coatnet::checkpoint::from_yaml(text, "fuzz/manifest.yaml");
  } catch (const std::exception&) {
  }
  try {
    coatnet::checkpoint::shard_from_yaml(text, "fuzz");
  } catch (const std::exception&) {
  }
  return 0;
}
