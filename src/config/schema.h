// The config schema: every key the YAML config may hold, with its type, default, range and a
// one-line description. Loading rejects anything not listed here, so a typo never silently
// falls back to a default.
#pragma once

#include <limits>
#include <string>
#include <vector>

namespace coatnet::config {

enum class Kind { Bool, Int, Float, String, Enum, IntList, FloatList, StringList };

struct KeySpec {
  std::string path;  // "optim.lr"
  Kind kind;
  std::string default_yaml;  // default value written as YAML ("1e-3", "[2, 3]", "cosine")
  std::string doc;           // one line
  double min = -std::numeric_limits<double>::infinity();  // numeric range (inclusive);
  double max = std::numeric_limits<double>::infinity();   // for lists: each element
  std::vector<std::string> choices;                       // Enum only
  // Part of the training recipe: what must stay the same for a resumed run to continue the
  // same run (a resume reports each one that changed, and checkpoints keep their hash).
  bool recipe = false;
};

const std::vector<KeySpec>& schema();
const KeySpec* find_key(const std::string& path);
std::vector<std::string> all_paths();
std::string kind_name(const KeySpec& spec);  // "a float in [0, 1]", "one of cosine|linear"

}  // namespace coatnet::config
