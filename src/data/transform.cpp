#include "data/transform.h"

#include <algorithm>
#include <cmath>

#include "data/crop_decode.h"
#include "data/randaugment.h"
#include "data/sampler.h"

namespace coatnet::data {

CropBox choose_crop(const TransformOptions& o, int64_t epoch, int64_t index, int h, int w) {
  if (!o.train) {
    double side = o.crop_pct * std::min(h, w);
    return {(w - side) / 2.0, (h - side) / 2.0, side, side, false};
  }
  KeyedRandom rng(key_of(o.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)));
  CropBox box{0, 0, static_cast<double>(w), static_cast<double>(h), false};
  const double area = static_cast<double>(h) * w;
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {  // torchvision's sampling
    double target = area * rng.uniform(o.scale_min, o.scale_max);
    double ratio = std::exp(rng.uniform(log_lo, log_hi));
    double cw = std::round(std::sqrt(target * ratio)), ch = std::round(std::sqrt(target / ratio));
    if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
      box = {std::floor(rng.uniform() * (w - cw + 1)), std::floor(rng.uniform() * (h - ch + 1)), cw,
             ch, false};
      found = true;
    }
  }
  if (!found) {  // fall back to a center crop with the ratio clamped into range
    double in_ratio = static_cast<double>(w) / h;
    double cw = w, ch = h;
    if (in_ratio < o.ratio_min)
      ch = std::round(w / o.ratio_min);
    else if (in_ratio > o.ratio_max)
      cw = std::round(h * o.ratio_max);
    box = {(w - cw) / 2.0, (h - ch) / 2.0, cw, ch, false};
  }
  box.flip = rng.uniform() < o.hflip;
  return box;
}

namespace {

constexpr int kBits = 11, kOne = 1 << kBits;  // 11-bit fixed-point bilinear weights

// One output row; channel counts are template parameters so the inner loop unrolls.
template <int C, int OC>
void resize_row(const uint8_t* r0, const uint8_t* r1, int wy, const int* x0, const int* x1,
                const int* wx, int size, uint8_t* o) {
  const int gy = kOne - wy;
  for (int i = 0; i < size; ++i) {
    const int a = x0[i], b = x1[i], fx = wx[i], gx = kOne - fx;
    for (int k = 0; k < OC; ++k) {
      const int ck = C == 1 ? 0 : k;
      const int top = r0[a + ck] * gx + r0[b + ck] * fx;
      const int bot = r1[a + ck] * gx + r1[b + ck] * fx;
      o[i * OC + k] =
          static_cast<uint8_t>((top * gy + bot * wy + (1 << (2 * kBits - 1))) >> (2 * kBits));
    }
  }
}

}  // namespace

void resize_crop(const uint8_t* src, int h, int w, int c, const CropBox& box, int size, int out_c,
                 uint8_t* out) {
  // Sample positions follow align_corners=False: output pixel i maps to box.x + (i+0.5)*sx - 0.5.
  // Integer math with exact rounding; no float per pixel.
  const double sx = box.w / size, sy = box.h / size;
  std::vector<int> x0(size), x1(size), wx(size);
  for (int i = 0; i < size; ++i) {
    int oi = box.flip ? size - 1 - i : i;
    double x = std::clamp(box.x + (oi + 0.5) * sx - 0.5, 0.0, w - 1.0);
    int xi = static_cast<int>(x);
    x0[i] = xi * c;
    x1[i] = std::min(xi + 1, w - 1) * c;
    wx[i] = static_cast<int>((x - xi) * kOne + 0.5);
  }
  auto row = c == 3 && out_c == 3   ? resize_row<3, 3>
             : c == 1 && out_c == 1 ? resize_row<1, 1>
             : c == 1 && out_c == 3 ? resize_row<1, 3>
                                    : nullptr;
  if (!row)
    throw std::invalid_argument("resize_crop: " + std::to_string(c) + " -> " +
                                std::to_string(out_c) + " channels is not supported");
  for (int j = 0; j < size; ++j) {
    double y = std::clamp(box.y + (j + 0.5) * sy - 0.5, 0.0, h - 1.0);
    int y0 = static_cast<int>(y), y1 = std::min(y0 + 1, h - 1);
    const int wy = static_cast<int>((y - y0) * kOne + 0.5);
    row(src + static_cast<size_t>(y0) * w * c, src + static_cast<size_t>(y1) * w * c, wy, x0.data(),
        x1.data(), wx.data(), size, out + static_cast<size_t>(j) * size * out_c);
  }
}

Decoder::Decoder() : tj_(tjInitDecompress()) {
  if (!tj_) throw std::runtime_error("TurboJPEG: cannot create a decompressor");
}

Decoder::~Decoder() {
  tjDestroy(tj_);
}

int64_t Decoder::decode_full(const std::vector<uint8_t>& encoded) {
  int w = 0, h = 0, sub = 0, cs = 0;
  if (tjDecompressHeader3(tj_, encoded.data(), encoded.size(), &w, &h, &sub, &cs) != 0)
    throw DecodeError(std::string("not a readable JPEG: ") + tjGetErrorStr2(tj_));
  pixels_.resize(static_cast<size_t>(w) * h * 3);
  if (tjDecompress2(tj_, encoded.data(), encoded.size(), pixels_.data(), w, 0, h, TJPF_RGB,
                    TJFLAG_FASTDCT) != 0)
    throw DecodeError(std::string("JPEG does not decode: ") + tjGetErrorStr2(tj_));
  return static_cast<int64_t>(w) * h;
}

void Decoder::transform(const std::vector<uint8_t>& encoded, const std::string& encoding, int h,
                        int w, int c, const TransformOptions& o, int64_t epoch, int64_t index,
                        uint8_t* out) {
  CropBox box = choose_crop(o, epoch, index, h, w);
  if (encoding == "raw") {
    if (encoded.size() != static_cast<size_t>(h) * w * c)
      throw DecodeError("raw record of " + std::to_string(encoded.size()) + " bytes for " +
                        std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c));
    resize_crop(encoded.data(), h, w, c, box, o.size, o.channels, out);
    augment(o, epoch, index, out);
    return;
  }
  int jw = 0, jh = 0, sub = 0, cs = 0;
  if (tjDecompressHeader3(tj_, encoded.data(), encoded.size(), &jw, &jh, &sub, &cs) != 0 ||
      jw <= 0 || jh <= 0)
    throw DecodeError(std::string("not a readable JPEG: ") + tjGetErrorStr2(tj_));
  if (jw != w || jh != h)
    throw DecodeError("JPEG is " + std::to_string(jw) + "x" + std::to_string(jh) +
                      " but the shard says " + std::to_string(w) + "x" + std::to_string(h));
  // The smallest DCT scale at which the crop still has at least `size` pixels each way: the
  // decoder then does most of the downscaling for free.
  int n = 0;
  tjscalingfactor* factors = tjGetScalingFactors(&n);
  tjscalingfactor best{1, 1};
  for (int i = 0; i < n; ++i) {
    const tjscalingfactor f = factors[i];
    // Only 1, 1/2, 1/4, 1/8: libjpeg-turbo has SIMD IDCTs for these; the others (3/4, 5/8, ...)
    // run plain C IDCTs and measured slower than decoding at the next larger SIMD scale.
    if (f.num != 1 || (f.denom != 1 && f.denom != 2 && f.denom != 4 && f.denom != 8)) continue;
    double s = static_cast<double>(f.num) / f.denom;
    if (box.w * s >= o.size && box.h * s >= o.size &&
        s < static_cast<double>(best.num) / best.denom)
      best = f;
  }
  const int sw = TJSCALED(w, best), sh = TJSCALED(h, best);
  const double fx = static_cast<double>(sw) / w, fy = static_cast<double>(sh) / h;
  // Decode only the crop's rows and (iMCU-aligned) columns, with a pixel of margin for the
  // bilinear neighbours; sample positions are then relative to the decoded region.
  const int rx = static_cast<int>(std::floor(box.x * fx)) - 1;
  const int ry = static_cast<int>(std::floor(box.y * fy)) - 1;
  const int rw = static_cast<int>(std::ceil((box.x + box.w) * fx)) + 1 - rx;
  const int rh = static_cast<int>(std::ceil((box.y + box.h) * fy)) + 1 - ry;
  std::string why;
  if (!decode_region(encoded, best.num * 8 / best.denom, rx, ry, rw, rh, &region_, &why))
    throw DecodeError("JPEG does not decode: " + why);
  CropBox scaled{box.x * fx - region_.x0, box.y * fy - region_.y0, box.w * fx, box.h * fy,
                 box.flip};
  const uint8_t* pixels = region_.rgb.data();
  const int sh_r = region_.height, sw_r = region_.width;
  if (o.channels == 1) {
    // Luma-only output from an RGB decode: resize the RGB crop, then keep one channel.
    std::vector<uint8_t> rgb(static_cast<size_t>(o.size) * o.size * 3);
    resize_crop(pixels, sh_r, sw_r, 3, scaled, o.size, 3, rgb.data());
    for (size_t p = 0; p < static_cast<size_t>(o.size) * o.size; ++p)
      out[p] = static_cast<uint8_t>(
          (299 * rgb[3 * p] + 587 * rgb[3 * p + 1] + 114 * rgb[3 * p + 2] + 500) / 1000);
  } else {
    resize_crop(pixels, sh_r, sw_r, 3, scaled, o.size, o.channels, out);
  }
  augment(o, epoch, index, out);
}

void Decoder::augment(const TransformOptions& o, int64_t epoch, int64_t index, uint8_t* out) {
  if (!o.train || o.randaugment_n <= 0) return;
  uint64_t key =
      key_of(o.seed ^ 0x7261, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
  rand_augment(o.randaugment_n, o.randaugment_m, key, out, o.size, o.size, o.channels);
}

}  // namespace coatnet::data
