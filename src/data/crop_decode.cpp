#include "data/crop_decode.h"

#include <csetjmp>
#include <cstdio>
// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

#include <algorithm>

namespace coatnet::data {

namespace {

// libjpeg's default error handler calls exit(); this one jumps back with the message instead.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr cinfo, int level) {
  // Warnings (level -1: corrupt data) are errors here, as in the packer: never train on
  // a half-decoded image.
  if (level < 0) on_error(cinfo);
}

}  // namespace

bool decode_region(const std::vector<uint8_t>& jpeg, int scale_num, int x, int y, int w, int h,
                   int channels, DecodedRegion* out, std::string* error) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  // Everything below that can longjmp owns no C++ objects with destructors.
  if (setjmp(err.jump)) {
    *error = err.message;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, jpeg.data(), static_cast<unsigned long>(jpeg.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_GRAYSCALE) {
    std::snprintf(err.message, sizeof err.message, "colour space %d (re-pack to RGB JPEG)",
                  static_cast<int>(cinfo.jpeg_color_space));
    std::longjmp(err.jump, 1);
  }
  cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  cinfo.dct_method = JDCT_IFAST;
  cinfo.scale_num = static_cast<unsigned>(scale_num);
  cinfo.scale_denom = 8;
  jpeg_start_decompress(&cinfo);
  const int sw = static_cast<int>(cinfo.output_width), sh = static_cast<int>(cinfo.output_height);
  // New variables, not the arguments: a variable changed after setjmp is undefined after a
  // longjmp (GCC's -Wclobbered), even where, as here, the error path does not read it.
  const int cx = std::clamp(x, 0, sw - 1), cy = std::clamp(y, 0, sh - 1);
  const int cw = std::clamp(w, 1, sw - cx), ch = std::clamp(h, 1, sh - cy);
  JDIMENSION xoff = static_cast<JDIMENSION>(cx), width = static_cast<JDIMENSION>(cw);
  jpeg_crop_scanline(&cinfo, &xoff, &width);  // widens to iMCU boundaries
  if (cy > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(cy));
  const size_t stride = static_cast<size_t>(cinfo.output_width) * cinfo.output_components;
  out->pixels.resize(stride * ch);
  out->width = static_cast<int>(cinfo.output_width);
  out->channels = cinfo.output_components;
  out->height = ch;
  out->x0 = static_cast<int>(xoff);
  out->y0 = cy;
  out->scaled_width = sw;
  out->scaled_height = sh;
  while (static_cast<int>(cinfo.output_scanline) < cy + ch) {
    JSAMPROW row = out->pixels.data() + (cinfo.output_scanline - cy) * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_abort_decompress(&cinfo);  // the rows below the crop are not needed
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace coatnet::data
