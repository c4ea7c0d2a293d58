#include "data/randaugment.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "data/sampler.h"

namespace coatnet::data {

namespace {

double bin(double hi, int m) {
  return hi * m / 30.0;
}  // torchvision: linspace(0, hi, 31)[m]

// Round half away from zero (std::lround) and clamp to 0..255, without the libm call that cost
// a fifth of RandAugment's time: the same value for every input (v - trunc(v) is exact).
inline uint8_t clamp8(double v) {
  if (!(v > 0)) return 0;  // also NaN
  if (v >= 255) return 255;
  const int i = static_cast<int>(v);
  return static_cast<uint8_t>(i + (v - i >= 0.5));
}

// floor() of a value well inside int range, exact.
inline int floor_int(double v) {
  const int i = static_cast<int>(v);
  return i - (v < i);
}

// Scratch per thread: the ops run once per image, and allocating a copy each time showed up.
std::vector<uint8_t>& scratch_bytes(size_t n) {
  thread_local std::vector<uint8_t> s;
  s.resize(n);
  return s;
}

// Inverse-mapped affine warp about the image center, nearest neighbour, fill 0 (torchvision).
// (sx, sy) = source position for destination (x, y): sx = a*x + b*y + c0, sy = d*x + e*y + f0.
void warp(uint8_t* img, int h, int w, int c, double a, double b, double c0, double d, double e,
          double f0) {
  std::vector<uint8_t>& src = scratch_bytes(static_cast<size_t>(h) * w * c);
  std::copy(img, img + src.size(), src.begin());
  const double cx = w * 0.5, cy = h * 0.5;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      double sx = a * dx + b * dy + c0 + cx, sy = d * dx + e * dy + f0 + cy;
      if (!(sx > -1e9 && sx < 1e9 && sy > -1e9 && sy < 1e9)) sx = sy = -1;  // int-safe
      int ix = floor_int(sx), iy = floor_int(sy);
      uint8_t* o = img + (static_cast<size_t>(y) * w + x) * c;
      if (ix < 0 || iy < 0 || ix >= w || iy >= h) {
        std::fill(o, o + c, 0);
      } else {
        const uint8_t* s = &src[(static_cast<size_t>(iy) * w + ix) * c];
        std::copy(s, s + c, o);
      }
    }
}

double luma(const uint8_t* p, int c) {
  return c == 1 ? p[0] : (299 * p[0] + 587 * p[1] + 114 * p[2]) / 1000.0;
}

// PIL's ImageEnhance: out = degenerate + factor * (img - degenerate), per pixel value.
void blend(uint8_t* img, const uint8_t* degenerate, size_t n, double factor) {
  for (size_t i = 0; i < n; ++i)
    img[i] = clamp8(degenerate[i] + factor * (img[i] - static_cast<double>(degenerate[i])));
}

// The same against one constant degenerate value: a 256-entry table.
void blend_constant(uint8_t* img, double degenerate, size_t n, double factor) {
  std::array<uint8_t, 256> lut;
  for (int v = 0; v < 256; ++v) lut[v] = clamp8(degenerate + factor * (v - degenerate));
  for (size_t i = 0; i < n; ++i) img[i] = lut[img[i]];
}

}  // namespace

const char* aug_op_name(AugOp op) {
  static const char* names[kNumAugOps] = {"identity",     "shear_x",   "shear_y",    "translate_x",
                                          "translate_y",  "rotate",    "brightness", "color",
                                          "contrast",     "sharpness", "posterize",  "solarize",
                                          "autocontrast", "equalize"};
  return names[static_cast<int>(op)];
}

void apply_aug_op(AugOp op, int m, int sign, uint8_t* img, int h, int w, int c) {
  const size_t n = static_cast<size_t>(h) * w * c;
  switch (op) {
    case AugOp::Identity:
      return;
    case AugOp::ShearX:
      return warp(img, h, w, c, 1, sign * bin(0.3, m), 0, 0, 1, 0);
    case AugOp::ShearY:
      return warp(img, h, w, c, 1, 0, 0, sign * bin(0.3, m), 1, 0);
    case AugOp::TranslateX:
      return warp(img, h, w, c, 1, 0, -sign * bin(150.0 / 331 * w, m), 0, 1, 0);
    case AugOp::TranslateY:
      return warp(img, h, w, c, 1, 0, 0, 0, 1, -sign * bin(150.0 / 331 * h, m));
    case AugOp::Rotate: {
      double t = sign * bin(30.0, m) * M_PI / 180.0;
      return warp(img, h, w, c, std::cos(t), std::sin(t), 0, -std::sin(t), std::cos(t), 0);
    }
    case AugOp::Brightness:
      return blend_constant(img, 0.0, n, 1.0 + sign * bin(0.9, m));
    case AugOp::Color: {
      if (c == 1) return;  // a gray image is its own luma: no change
      std::vector<double> gray(n / c);
      for (size_t p = 0; p < n / c; ++p) gray[p] = luma(img + p * c, c);
      const double f = 1.0 + sign * bin(0.9, m);
      for (size_t p = 0; p < n / c; ++p)
        for (int k = 0; k < c; ++k)
          img[p * c + k] = clamp8(gray[p] + f * (img[p * c + k] - gray[p]));
      return;
    }
    case AugOp::Contrast: {
      double mean = 0;
      for (size_t p = 0; p < n / c; ++p) mean += luma(img + p * c, c);
      return blend_constant(img, mean / (n / c), n, 1.0 + sign * bin(0.9, m));
    }
    case AugOp::Sharpness: {
      // Degenerate = 3x3 smoothing (center weight 5, total 13, rounded half up: 13 is odd, so
      // s/13 is never a tie); borders keep their pixels.
      std::vector<uint8_t>& smooth = scratch_bytes(n);
      std::copy(img, img + n, smooth.begin());
      for (int y = 1; y + 1 < h; ++y)
        for (int x = 1; x + 1 < w; ++x)
          for (int k = 0; k < c; ++k) {
            int s = 4 * img[(static_cast<size_t>(y) * w + x) * c + k];
            for (int dy = -1; dy <= 1; ++dy)
              for (int dx = -1; dx <= 1; ++dx)
                s += img[(static_cast<size_t>(y + dy) * w + x + dx) * c + k];
            smooth[(static_cast<size_t>(y) * w + x) * c + k] =
                static_cast<uint8_t>((2 * s + 13) / 26);
          }
      return blend(img, smooth.data(), n, 1.0 + sign * bin(0.9, m));
    }
    case AugOp::Posterize: {
      int bits = 8 - static_cast<int>(std::lround(m / 7.5));
      uint8_t mask = static_cast<uint8_t>(0xFF << (8 - bits));
      for (size_t i = 0; i < n; ++i) img[i] &= mask;
      return;
    }
    case AugOp::Solarize: {
      double threshold = 255.0 - bin(255.0, m);
      for (size_t i = 0; i < n; ++i)
        if (img[i] >= threshold) img[i] = static_cast<uint8_t>(255 - img[i]);
      return;
    }
    case AugOp::AutoContrast:
      for (int k = 0; k < c; ++k) {
        int lo = 255, hi = 0;
        for (size_t i = k; i < n; i += c)
          lo = std::min<int>(lo, img[i]), hi = std::max<int>(hi, img[i]);
        if (hi <= lo) continue;
        double scale = 255.0 / (hi - lo);
        std::array<uint8_t, 256> lut;
        for (int v = 0; v < 256; ++v) lut[v] = clamp8((v - lo) * scale);
        for (size_t i = k; i < n; i += c) img[i] = lut[img[i]];
      }
      return;
    case AugOp::Equalize:
      for (int k = 0; k < c; ++k) {  // PIL's ImageOps.equalize
        std::array<int, 256> hist{};
        for (size_t i = k; i < n; i += c) ++hist[img[i]];
        int last = 255;
        while (last > 0 && hist[last] == 0) --last;
        int total = 0;
        for (int v = 0; v < 256; ++v) total += hist[v];
        int step = (total - hist[last]) / 255;
        if (step == 0) continue;
        std::array<uint8_t, 256> lut{};
        int acc = step / 2;
        for (int v = 0; v < 256; ++v) {
          lut[v] = static_cast<uint8_t>(std::min(255, acc / step));
          acc += hist[v];
        }
        for (size_t i = k; i < n; i += c) img[i] = lut[img[i]];
      }
      return;
  }
}

void rand_augment(int n, int m, uint64_t key, uint8_t* img, int h, int w, int c) {
  for (int i = 0; i < n; ++i) {
    uint64_t r = mix64(key + 2 * i), s = mix64(key + 2 * i + 1);
    auto op = static_cast<AugOp>(r % kNumAugOps);
    apply_aug_op(op, m, (s & 1) ? 1 : -1, img, h, w, c);
  }
}

}  // namespace coatnet::data
