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
  v = std::min(std::max(v, 0.0), 255.0);  // branch-free: minsd/maxsd
  const int i = static_cast<int>(v);
  return static_cast<uint8_t>(i + (v - i >= 0.5));
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
  // a·dx and d·dx per column, b·dy and e·dy per row: the same products and sums, in the same
  // order, as evaluating the whole expression per pixel, so the same pixels, at a third of
  // the arithmetic.
  thread_local std::vector<double> adx, ddx;
  adx.resize(w);
  ddx.resize(w);
  for (int x = 0; x < w; ++x) {
    const double dx = x + 0.5 - cx;
    adx[x] = a * dx;
    ddx[x] = d * dx;
  }
  for (int y = 0; y < h; ++y) {
    const double dy = y + 0.5 - cy, bdy = b * dy, edy = e * dy;
    uint8_t* o = img + static_cast<size_t>(y) * w * c;
    for (int x = 0; x < w; ++x, o += c) {
      const double sx = adx[x] + bdy + c0 + cx, sy = ddx[x] + edy + f0 + cy;
      // Outside (or NaN): fill. Inside, sx and sy are ≥ 0, so truncation is floor.
      if (!(sx >= 0 && sx < w && sy >= 0 && sy < h)) {
        std::fill(o, o + c, 0);
      } else {
        const uint8_t* p =
            &src[(static_cast<size_t>(static_cast<int>(sy)) * w + static_cast<int>(sx)) * c];
        std::copy(p, p + c, o);
      }
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
    // As torchvision's F.affine(center=[0, 0]) and timm's PIL transforms: shears about the
    // top-left corner, so the top row (ShearX) or left column (ShearY) stays in place.
    case AugOp::ShearX: {
      const double s = sign * bin(0.3, m);
      return warp(img, h, w, c, 1, s, s * h * 0.5, 0, 1, 0);
    }
    case AugOp::ShearY: {
      const double s = sign * bin(0.3, m);
      return warp(img, h, w, c, 1, 0, 0, s, 1, s * w * 0.5);
    }
    // Whole pixels, truncated, as torchvision's F.affine(translate=[int(magnitude), 0]).
    case AugOp::TranslateX:
      return warp(img, h, w, c, 1, 0, -sign * std::trunc(bin(150.0 / 331 * w, m)), 0, 1, 0);
    case AugOp::TranslateY:
      return warp(img, h, w, c, 1, 0, 0, 0, 1, -sign * std::trunc(bin(150.0 / 331 * h, m)));
    case AugOp::Rotate: {  // a positive angle turns counter-clockwise, as F.rotate
      const double t = -sign * bin(30.0, m) * M_PI / 180.0;
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
      const size_t stride = static_cast<size_t>(w) * c;
      for (int y = 1; y + 1 < h; ++y) {
        const uint8_t* mid = img + y * stride;
        const uint8_t *up = mid - stride, *down = mid + stride;
        uint8_t* out = smooth.data() + y * stride;
        for (size_t i = c; i + c < stride; ++i) {  // (x, k) for x in 1..w-2, contiguous
          const int s = up[i - c] + up[i] + up[i + c] + mid[i - c] + 5 * mid[i] + mid[i + c] +
                        down[i - c] + down[i] + down[i + c];
          out[i] = static_cast<uint8_t>((2 * s + 13) / 26);
        }
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
      std::array<uint8_t, 256> lut;
      for (int v = 0; v < 256; ++v) lut[v] = static_cast<uint8_t>(v >= threshold ? 255 - v : v);
      for (size_t i = 0; i < n; ++i) img[i] = lut[img[i]];
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
