// JSON through nlohmann-json. `ordered_json` everywhere: records and reports keep their fields
// in the order they were built, which is the order people read them in; safetensors headers are
// read in file order. Integers stay integers (never through a double), so 64-bit offsets are
// exact; non-negative ones parse as unsigned.
#pragma once

#include <nlohmann/json.hpp>

namespace coatnet::json {

using Value = nlohmann::ordered_json;

}  // namespace coatnet::json
