// Checking and normalising source images for packing: every record in a shard ends up a
// baseline RGB (YCbCr) JPEG that the loader can decode. Grayscale, CMYK/YCCK, progressive and
// PNG sources are converted (or skipped, by choice); truncated, empty, non-image and oversized
// files are skipped. Either way the outcome is reported, never a silent drop.
#pragma once

#include <turbojpeg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace coatnet::data {

struct ImageCheckOptions {
  bool convert = true;        // convert convertible sources; false: skip them
  int max_side = 0;           // >0: re-encode images whose longer side exceeds it, downscaled
  int quality = 90;           // JPEG quality of re-encoded images
  bool reencode_all = false;  // re-encode every image (with --max-side, FFCV-style)
};

struct CheckedImage {
  std::vector<uint8_t> jpeg;  // empty when skipped
  int height = 0, width = 0;
  std::string note;  // why it was converted ("grayscale -> RGB JPEG"), or why skipped
  bool skipped = false;
};

class ImageChecker {
 public:
  explicit ImageChecker(ImageCheckOptions o);
  ~ImageChecker();
  ImageChecker(const ImageChecker&) = delete;
  ImageChecker& operator=(const ImageChecker&) = delete;
  CheckedImage check(const std::vector<uint8_t>& file_bytes);

 private:
  CheckedImage encode(std::vector<uint8_t>& rgb, int h, int w, const std::string& note);
  ImageCheckOptions o_;
  tjhandle dec_, enc_;
};

bool is_progressive_jpeg(const std::vector<uint8_t>& bytes);

// Area-averaging downscale of an RGB image (no aliasing, as FFCV's re-encode).
std::vector<uint8_t> downscale_rgb(const std::vector<uint8_t>& src, int h, int w, int nh, int nw);

}  // namespace coatnet::data
