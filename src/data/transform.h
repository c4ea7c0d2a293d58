// Per-sample decode and augmentation, written straight into a batch buffer.
//
// Training: RandomResizedCrop (area scale [scale_min, 1], aspect ratio [3/4, 4/3], torchvision's
// sampling) decoded at the smallest JPEG DCT scale whose image still covers the crop at the
// output size, bilinear resize, horizontal flip. Evaluation: a centered square of
// crop_pct·min(h, w), resized (= resize shorter side to size/crop_pct, then center crop).
// All randomness is keyed by (seed, epoch, sample index): a sample looks the same whichever
// rank or thread decodes it.
#pragma once

#include <turbojpeg.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/crop_decode.h"
#include "data/resize.h"
#include "data/shard.h"

namespace coatnet::data {

struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TransformOptions {
  int size = 224;    // output height and width
  int channels = 3;  // output channels (1-channel records are replicated to 3)
  bool train = true;
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  double hflip = 0.5;
  double crop_pct = 0.875;
  int randaugment_n = 0;   // ops per image (training only); 0 = off
  int randaugment_m = 10;  // magnitude 0..30 (torchvision's bins)
  uint64_t seed = 0;
};

// The crop of sample `index` in `epoch` for an h×w image (deterministic).
CropBox choose_crop(const TransformOptions& o, int64_t epoch, int64_t index, int h, int w);

// One decoder per thread: owns its TurboJPEG handle and scratch buffers.
class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes and transforms `encoded` (record shape h×w×c, `encoding` jpeg|raw) into `out`
  // (o.size × o.size × o.channels in out's dtype and layout; out.size and out.channels must
  // match). Throws DecodeError for a record that does not decode; `out` may then be partly
  // written.
  void transform(const std::vector<uint8_t>& encoded, const std::string& encoding, int h, int w,
                 int c, const TransformOptions& o, int64_t epoch, int64_t index,
                 const ImageOut& out);
  // The same into an HWC uint8 buffer.
  void transform(const std::vector<uint8_t>& encoded, const std::string& encoding, int h, int w,
                 int c, const TransformOptions& o, int64_t epoch, int64_t index, uint8_t* out) {
    transform(encoded, encoding, h, w, c, o, epoch, index,
              ImageOut::hwc_u8(out, o.size, o.channels));
  }

  // Full-size RGB decode (the benchmark's ceiling); returns pixels decoded.
  int64_t decode_full(const std::vector<uint8_t>& encoded);

 private:
  // Resizes the crop into `out`, through an HWC scratch image when RandAugment is on.
  void resize_augment(const uint8_t* src, int h, int w, int c, const CropBox& box,
                      const TransformOptions& o, int64_t epoch, int64_t index, const ImageOut& out);
  tjhandle tj_;
  std::vector<uint8_t> pixels_;  // full-size decode (decode_full)
  DecodedRegion region_;         // the crop's region (transform)
  std::vector<uint8_t> hwc_;     // the resized crop, for RandAugment
};

}  // namespace coatnet::data
