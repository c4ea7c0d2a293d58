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
                        const ImageOut& out) {
  CropBox box = choose_crop(o, epoch, index, h, w);
  if (encoding == "raw") {
    if (encoded.size() != static_cast<size_t>(h) * w * c)
      throw DecodeError("raw record of " + std::to_string(encoded.size()) + " bytes for " +
                        std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c));
    resize_augment(encoded.data(), h, w, c, box, o, epoch, index, out);
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
  // RGB rows (RGBX measured 10% slower in the resize: a third more bytes to blend, same column
  // cost), or luma alone for 1-channel output: for a YCbCr JPEG its Y plane, no colour
  // conversion at all.
  const int region_channels = o.channels == 1 ? 1 : 3;
  if (!decode_region(encoded, best.num * 8 / best.denom, rx, ry, rw, rh, region_channels, &region_,
                     &why))
    throw DecodeError("JPEG does not decode: " + why);
  CropBox scaled{box.x * fx - region_.x0, box.y * fy - region_.y0, box.w * fx, box.h * fy,
                 box.flip};
  resize_augment(region_.pixels.data(), region_.height, region_.width, region_channels, scaled, o,
                 epoch, index, out);
}

void Decoder::resize_augment(const uint8_t* src, int h, int w, int c, const CropBox& box,
                             const TransformOptions& o, int64_t epoch, int64_t index,
                             const ImageOut& out) {
  if (out.size != o.size || out.channels != o.channels)
    throw std::invalid_argument("transform: output is " + std::to_string(out.size) + "px x " +
                                std::to_string(out.channels) + " channels, options say " +
                                std::to_string(o.size) + "px x " + std::to_string(o.channels));
  if (!o.train || o.randaugment_n <= 0) {
    resize_crop(src, h, w, c, box, out);  // straight into the batch
    return;
  }
  hwc_.resize(static_cast<size_t>(o.size) * o.size * o.channels);
  resize_crop(src, h, w, c, box, o.size, o.channels, hwc_.data());
  uint64_t key =
      key_of(o.seed ^ 0x7261, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
  rand_augment(o.randaugment_n, o.randaugment_m, key, hwc_.data(), o.size, o.size, o.channels);
  write_hwc(out, hwc_.data());
}

}  // namespace coatnet::data
