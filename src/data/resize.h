// Bilinear crop-and-resize (align_corners=False, as torchvision's RandomResizedCrop) in fixed
// point, written straight into the sample's slot of the batch in the batch's dtype and layout.
//
// Why this shape: at 224 px the resize and the float store cost as much as decoding the crop
// (0.47 ms and about 0.2 ms against 0.7 ms, measured on real photos). So the resize blends the
// two source rows first (contiguous, vectorised), then samples columns from that one blended
// row (SSE2 for RGB: one 16-byte load holds both neighbours of an output pixel),
// and hands each finished output row, planar and in cache, to `write_row`, which normalises it
// into the batch. No full-size intermediate image, no second pass over the pixels.
#pragma once

#include <cstdint>

namespace coatnet::data {

struct CropBox {
  double x, y, w, h;  // in source pixels
  bool flip = false;
};

// Where a sample's pixels go: `size`×`size`×`channels`, HWC (channels_last) or CHW, uint8, or
// float normalised as v·scale[k] + bias[k] (v in 0..255) when `scale` is set.
struct ImageOut {
  void* data = nullptr;
  int size = 0, channels = 3;
  bool channels_last = true;
  const float* scale = nullptr;
  const float* bias = nullptr;

  static ImageOut hwc_u8(uint8_t* data, int size, int channels) {
    return {data, size, channels, true, nullptr, nullptr};
  }
};

// Row j of `out` from planar uint8 values: channel k of pixel i at row[k * out.size + i].
void write_row(const ImageOut& out, int j, const uint8_t* row);
// A whole HWC uint8 image (e.g. after RandAugment) into `out`.
void write_hwc(const ImageOut& out, const uint8_t* hwc);
// A black image (value 0 in every channel, normalised like any other): padding rows and records
// that failed to decode.
void write_black(const ImageOut& out);

// Crops `box` out of an h×w×c uint8 image and resizes it to out.size × out.size, mirrored when
// box.flip. c (source channels) and out.channels are 1 or 3. A single
// channel is replicated to 3; colour to one channel is its luma (299 R + 587 G + 114 B) / 1000.
void resize_crop(const uint8_t* src, int h, int w, int c, const CropBox& box, const ImageOut& out);

// The same into an HWC uint8 buffer.
void resize_crop(const uint8_t* src, int h, int w, int c, const CropBox& box, int size, int out_c,
                 uint8_t* out);

namespace detail {
// The portable path alone; it gives exactly the same pixels as the SIMD one (tested).
void resize_crop_portable(const uint8_t* src, int h, int w, int c, const CropBox& box,
                          const ImageOut& out);
}  // namespace detail

}  // namespace coatnet::data
