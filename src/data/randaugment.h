// RandAugment (Cubuk et al. 2020) with torchvision's operations and magnitude bins: n ops drawn
// uniformly from 14 (identity, shear x/y, translate x/y, rotate, brightness, color, contrast,
// sharpness, posterize, solarize, autocontrast, equalize), each at magnitude m of 0..30, signed
// at random where the op has a direction. Works in place on an H×W×C uint8 image; randomness
// comes from the caller's key, so it is the same on every rank and thread. The geometric ops
// give torchvision's pixels exactly; the colour ops round like PIL (torchvision's tensor ops
// truncate), within one grey level (tests/data/randaugment_vs_torchvision.py).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coatnet::data {

enum class AugOp {
  Identity,
  ShearX,
  ShearY,
  TranslateX,
  TranslateY,
  Rotate,
  Brightness,
  Color,
  Contrast,
  Sharpness,
  Posterize,
  Solarize,
  AutoContrast,
  Equalize
};
constexpr int kNumAugOps = 14;
const char* aug_op_name(AugOp op);

// One op at magnitude `m` (0..30) with direction `sign` (+1/-1), in place.
void apply_aug_op(AugOp op, int m, int sign, uint8_t* img, int h, int w, int c);

// n random ops at magnitude m, keyed by `key`.
void rand_augment(int n, int m, uint64_t key, uint8_t* img, int h, int w, int c);

}  // namespace coatnet::data
