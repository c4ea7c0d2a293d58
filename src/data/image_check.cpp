#include "data/image_check.h"

#include <png.h>

#include <algorithm>
#include <stdexcept>

namespace coatnet::data {

namespace {

constexpr int64_t kMaxPixels = int64_t{1} << 28;  // 268 MP: beyond any photo corpus

bool is_jpeg(const std::vector<uint8_t>& b) {
  return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}
bool is_png(const std::vector<uint8_t>& b) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  return b.size() >= 8 && std::equal(sig, sig + 8, b.begin());
}

}  // namespace

bool is_progressive_jpeg(const std::vector<uint8_t>& b) {
  // Walk the marker segments up to the first start-of-frame: SOF2 (0xC2) means progressive.
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xFF) return false;
    uint8_t m = b[i + 1];
    if (m == 0xFF) {
      ++i;
      continue;
    }
    if (m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE) return true;
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) return false;
    if (m == 0xDA) return false;  // start of scan without a frame header: let decode judge
    size_t len = (static_cast<size_t>(b[i + 2]) << 8) | b[i + 3];
    i += 2 + len;
  }
  return false;
}

std::vector<uint8_t> downscale_rgb(const std::vector<uint8_t>& src, int h, int w, int nh, int nw) {
  std::vector<uint8_t> out(static_cast<size_t>(nh) * nw * 3);
  const double sy = static_cast<double>(h) / nh, sx = static_cast<double>(w) / nw;
  for (int y = 0; y < nh; ++y) {
    int y0 = static_cast<int>(y * sy), y1 = std::max(y0 + 1, static_cast<int>((y + 1) * sy));
    for (int x = 0; x < nw; ++x) {
      int x0 = static_cast<int>(x * sx), x1 = std::max(x0 + 1, static_cast<int>((x + 1) * sx));
      uint32_t acc[3] = {0, 0, 0};
      for (int yy = y0; yy < std::min(y1, h); ++yy)
        for (int xx = x0; xx < std::min(x1, w); ++xx)
          for (int c = 0; c < 3; ++c) acc[c] += src[(static_cast<size_t>(yy) * w + xx) * 3 + c];
      uint32_t n = static_cast<uint32_t>((std::min(y1, h) - y0) * (std::min(x1, w) - x0));
      for (int c = 0; c < 3; ++c)
        out[(static_cast<size_t>(y) * nw + x) * 3 + c] = (acc[c] + n / 2) / n;
    }
  }
  return out;
}

ImageChecker::ImageChecker(ImageCheckOptions o)
    : o_(o), dec_(tjInitDecompress()), enc_(tjInitCompress()) {
  if (!dec_ || !enc_) throw std::runtime_error("TurboJPEG: cannot create handles");
}

ImageChecker::~ImageChecker() {
  tjDestroy(dec_);
  tjDestroy(enc_);
}

CheckedImage ImageChecker::encode(std::vector<uint8_t>& rgb, int h, int w,
                                  const std::string& note) {
  CheckedImage out;
  out.note = note;
  if (o_.max_side > 0 && std::max(h, w) > o_.max_side) {
    double s = static_cast<double>(o_.max_side) / std::max(h, w);
    int nh = std::max(1, static_cast<int>(h * s + 0.5)),
        nw = std::max(1, static_cast<int>(w * s + 0.5));
    rgb = downscale_rgb(rgb, h, w, nh, nw);
    out.note += (out.note.empty() ? "" : ", ") + std::string("downscaled to max side ") +
                std::to_string(o_.max_side);
    h = nh;
    w = nw;
  }
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (tjCompress2(enc_, rgb.data(), w, 0, h, TJPF_RGB, &buf, &size, TJSAMP_420, o_.quality, 0) !=
      0) {
    out.skipped = true;
    out.note = std::string("re-encoding failed: ") + tjGetErrorStr2(enc_);
    return out;
  }
  out.jpeg.assign(buf, buf + size);
  tjFree(buf);
  out.height = h;
  out.width = w;
  return out;
}

CheckedImage ImageChecker::check(const std::vector<uint8_t>& bytes) {
  CheckedImage skip;
  skip.skipped = true;
  if (bytes.empty()) return skip.note = "empty file", skip;
  std::vector<uint8_t> rgb;
  int h = 0, w = 0;
  std::string note;
  bool must_convert = false;
  if (is_jpeg(bytes)) {
    int sub = 0, cs = 0;
    if (tjDecompressHeader3(dec_, bytes.data(), bytes.size(), &w, &h, &sub, &cs) != 0 || w <= 0 ||
        h <= 0)
      return skip.note = std::string("corrupt JPEG header: ") + tjGetErrorStr2(dec_), skip;
    if (static_cast<int64_t>(w) * h > kMaxPixels)
      return skip.note = "too large: " + std::to_string(w) + "x" + std::to_string(h), skip;
    const bool cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    std::vector<uint8_t> decoded(static_cast<size_t>(w) * h * (cmyk ? 4 : 3));
    // Full decode with warnings as errors: a truncated JPEG decodes "successfully" otherwise.
    // TurboJPEG decodes CMYK only to CMYK, so those are converted to RGB below.
    if (tjDecompress2(dec_, bytes.data(), bytes.size(), decoded.data(), w, 0, h,
                      cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_STOPONWARNING) != 0)
      return skip.note = std::string("truncated or corrupt JPEG: ") + tjGetErrorStr2(dec_), skip;
    if (cmyk) {
      // libjpeg's CMYK is inverted (Adobe): 255 = no ink, so R = C·K/255 and so on.
      rgb.resize(static_cast<size_t>(w) * h * 3);
      for (size_t p = 0; p < static_cast<size_t>(w) * h; ++p)
        for (int c = 0; c < 3; ++c)
          rgb[3 * p + c] =
              static_cast<uint8_t>((decoded[4 * p + c] * decoded[4 * p + 3] + 127) / 255);
    } else {
      rgb = std::move(decoded);
    }
    if (cs == TJCS_GRAY)
      note = "grayscale -> RGB JPEG";
    else if (cs == TJCS_CMYK || cs == TJCS_YCCK)
      note = "CMYK -> RGB JPEG";
    else if (is_progressive_jpeg(bytes))
      note = "progressive -> baseline JPEG";
    must_convert = !note.empty();
  } else if (is_png(bytes)) {
    png_image img{};
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()))
      return skip.note = std::string("corrupt PNG: ") + img.message, skip;
    img.format = PNG_FORMAT_RGB;
    w = static_cast<int>(img.width);
    h = static_cast<int>(img.height);
    if (static_cast<int64_t>(w) * h > kMaxPixels) {
      png_image_free(&img);
      return skip.note = "too large: " + std::to_string(w) + "x" + std::to_string(h), skip;
    }
    rgb.resize(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, nullptr, rgb.data(), 0, nullptr))
      return skip.note = std::string("truncated or corrupt PNG: ") + img.message, skip;
    note = "PNG -> RGB JPEG";
    must_convert = true;
  } else {
    return skip.note = "not a JPEG or PNG (wrong extension, or text?)", skip;
  }
  if (must_convert && !o_.convert)
    return skip.note = note + " needed (skipped: --on-bad skip)", skip;
  bool resize = o_.max_side > 0 && std::max(h, w) > o_.max_side;
  if (must_convert || resize || o_.reencode_all) return encode(rgb, h, w, note);
  CheckedImage keep;  // a sound baseline RGB JPEG: its original bytes are kept
  keep.jpeg = bytes;
  keep.height = h;
  keep.width = w;
  return keep;
}

}  // namespace coatnet::data
