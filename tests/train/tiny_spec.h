// The model of tests/train/tiny.yaml (C-C-T-T at 32 px, one channel, 10 classes), for C++ tests
// that build it without reading the YAML.
#pragma once

#include "model/variants.h"

namespace coatnet::test {

inline model::ModelSpec tiny_spec() {
  model::ModelSpec s;
  s.name = "custom";
  s.layout = "CCTT";
  s.depths = {1, 1, 1, 1};
  s.widths = {16, 32, 32, 64};
  s.stem_widths = {16, 16};
  s.head_hidden = 0;
  s.image_size = 32;
  s.in_chans = 1;
  s.num_classes = 10;
  return s;
}

}  // namespace coatnet::test
