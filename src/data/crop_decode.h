// Decoding only the part of a JPEG a crop needs (as DALI and FFCV do): libjpeg-turbo's
// jpeg_crop_scanline limits the columns to the iMCU-aligned span around the crop and
// jpeg_skip_scanlines skips the rows above it; rows below are never decoded. With a DCT scale
// this is the cheapest way to get a RandomResizedCrop's pixels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coatnet::data {

struct DecodedRegion {
  std::vector<uint8_t> pixels;  // height × width × channels
  int width = 0, height = 0, channels = 0;
  int x0 = 0, y0 = 0;  // position of the region in the scaled image
  int scaled_width = 0, scaled_height = 0;
};

// Decodes the region [x, x+w) × [y, y+h) (in scaled-image pixels, clamped) of `jpeg` at scale
// num/8 as `channels` per pixel: 1 (luma) or 3 (RGB). Returns
// false, with `error` set, for a JPEG that libjpeg cannot decode. Only YCbCr and grayscale JPEGs
// (what `coatnet pack` writes) are decoded here.
bool decode_region(const std::vector<uint8_t>& jpeg, int scale_num, int x, int y, int w, int h,
                   int channels, DecodedRegion* out, std::string* error);

}  // namespace coatnet::data
