// config/config.h: a YAML config file and a --set override, as `coatnet train --config` reads them.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <exception>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    coatnet::config::Config c = coatnet::config::Config::defaults();
    c.merge_yaml(YAML::Load(text), "fuzz.yaml");
    c.dump();
  } catch (const std::exception&) {
  }
  try {
    coatnet::config::Config::defaults().set(text);
  } catch (const std::exception&) {
  }
  return 0;
}
