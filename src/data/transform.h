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

struct CropBox {
  double x, y, w, h;  // in source pixels
  bool flip = false;
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

  // Decodes and transforms `encoded` (record shape h×w×c, `encoding` jpeg|raw) into `out`:
  // size×size×channels uint8, HWC. Throws DecodeError for a record that does not decode.
  void transform(const std::vector<uint8_t>& encoded, const std::string& encoding, int h, int w,
                 int c, const TransformOptions& o, int64_t epoch, int64_t index, uint8_t* out);

  // Full-size RGB decode (the benchmark's ceiling); returns pixels decoded.
  int64_t decode_full(const std::vector<uint8_t>& encoded);

 private:
  void augment(const TransformOptions& o, int64_t epoch, int64_t index, uint8_t* out);
  tjhandle tj_;
  std::vector<uint8_t> pixels_;  // full-size decode (decode_full)
  DecodedRegion region_;         // the crop's region (transform)
};

// Crops `box` out of an h×w×c uint8 image and resizes it bilinearly to size×size×out_c
// (replicating a single channel when out_c is 3), mirrored when box.flip.
void resize_crop(const uint8_t* src, int h, int w, int c, const CropBox& box, int size, int out_c,
                 uint8_t* out);

}  // namespace coatnet::data
