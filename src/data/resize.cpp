#include "data/resize.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace coatnet::data {

namespace {

// 7-bit weights: a vertically blended value (≤ 255·128) still fits a signed 16-bit lane, which
// lets SSE2's pmaddwd do the horizontal blend of both neighbours in one instruction.
constexpr int kBits = 7, kOne = 1 << kBits;
constexpr int kShift = 2 * kBits, kRound = 1 << (kShift - 1);

// Source position of output index i along an axis of `n` source pixels: the left (upper)
// neighbour and the weight of the right (lower) one. The neighbour pair always lies inside the
// image (at the last pixel the pair moves one left with full weight on the right), so the kernels
// need no bounds checks; a 1-pixel axis reads one padding element with weight 0.
struct Tap {
  int at;
  int weight;
};

Tap tap(double start, double step, int i, int n) {
  double x = std::clamp(start + (i + 0.5) * step - 0.5, 0.0, n - 1.0);
  int at = static_cast<int>(x);
  int weight = static_cast<int>((x - at) * kOne + 0.5);
  if (at >= n - 1) {
    at = std::max(n - 2, 0);
    weight = n >= 2 ? kOne : 0;
  }
  return {at, weight};
}

// Per-thread scratch, reused across images.
struct Scratch {
  std::vector<int> col;           // left neighbour of each output column, in pixels from `lo`
  std::vector<int32_t> weights;   // (kOne - w) | w << 16 per output column (pmaddwd's pair)
  std::vector<uint16_t> blended;  // one vertically blended source row, c values per pixel
  std::vector<uint8_t> row;       // one output row, planar
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Output columns [from, size) of one row, any channel layout.
void columns_portable(const uint16_t* v, int c, const int* col, const int32_t* weights, int from,
                      int size, int out_c, uint8_t* row) {
  for (int i = from; i < size; ++i) {
    const uint16_t* a = v + static_cast<size_t>(col[i]) * c;
    const int wb = weights[i] >> 16, wa = weights[i] & 0xffff;
    for (int k = 0; k < out_c; ++k) {
      const int ck = c == 1 ? 0 : k;
      row[k * size + i] = static_cast<uint8_t>((a[ck] * wa + a[c + ck] * wb + kRound) >> kShift);
    }
  }
}

#if defined(__SSE2__)
// RGB rows: each output pixel is one unaligned load (both neighbours: 3 + 3 of its 8 lanes),
// one interleave and one pmaddwd; four pixels are then transposed to planar R, G, B.
int columns_rgb_sse2(const uint16_t* v, const int* col, const int32_t* weights, int size,
                     uint8_t* row) {
  const __m128i round = _mm_set1_epi32(kRound);
  auto pixel = [&](int i) {
    __m128i ab = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v + 3 * col[i]));
    __m128i pairs = _mm_unpacklo_epi16(ab, _mm_srli_si128(ab, 6));  // a_r b_r a_g b_g a_b b_b
    return _mm_madd_epi16(pairs, _mm_set1_epi32(weights[i]));
  };
  auto four = [&](int i, __m128i* r, __m128i* g, __m128i* b) {
    __m128i s0 = pixel(i), s1 = pixel(i + 1), s2 = pixel(i + 2), s3 = pixel(i + 3);
    __m128i rg01 = _mm_unpacklo_epi32(s0, s1), rg23 = _mm_unpacklo_epi32(s2, s3);
    __m128i bx01 = _mm_unpackhi_epi32(s0, s1), bx23 = _mm_unpackhi_epi32(s2, s3);
    *r = _mm_srai_epi32(_mm_add_epi32(_mm_unpacklo_epi64(rg01, rg23), round), kShift);
    *g = _mm_srai_epi32(_mm_add_epi32(_mm_unpackhi_epi64(rg01, rg23), round), kShift);
    *b = _mm_srai_epi32(_mm_add_epi32(_mm_unpacklo_epi64(bx01, bx23), round), kShift);
  };
  auto store8 = [](uint8_t* p, __m128i lo, __m128i hi) {
    __m128i w = _mm_packs_epi32(lo, hi);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
  };
  int i = 0;
  for (; i + 8 <= size; i += 8) {
    __m128i r0, g0, b0, r1, g1, b1;
    four(i, &r0, &g0, &b0);
    four(i + 4, &r1, &g1, &b1);
    store8(row + i, r0, r1);
    store8(row + size + i, g0, g1);
    store8(row + 2 * size + i, b0, b1);
  }
  return i;
}
#endif

void check_channels(int c, int out_c) {
  const bool ok = (c == 1 || c == 3) && (out_c == 1 || out_c == 3);
  if (!ok)
    throw std::invalid_argument("resize_crop: " + std::to_string(c) + " -> " +
                                std::to_string(out_c) + " channels is not supported");
}

void resize(const uint8_t* src, int h, int w, int c, const CropBox& box, const ImageOut& out,
            bool simd) {
  check_channels(c, out.channels);
  const int size = out.size;
  Scratch& s = scratch();
  s.col.resize(size);
  s.weights.resize(size);
  const double sx = box.w / size, sy = box.h / size;
  int lo = w, hi = 0;  // source columns any output column reads: [lo, hi]
  for (int i = 0; i < size; ++i) {
    Tap t = tap(box.x, sx, box.flip ? size - 1 - i : i, w);
    s.col[i] = t.at;
    s.weights[i] = (kOne - t.weight) | (t.weight << 16);
    lo = std::min(lo, t.at);
    hi = std::max(hi, std::min(t.at + 1, w - 1));
  }
  for (int& x : s.col) x -= lo;
  // One padding pixel (zeros, weight 0) for a 1-pixel-wide image, and room for the 16-byte loads.
  const size_t span = static_cast<size_t>(hi - lo + 1) * c;
  s.blended.assign(span + 2 * static_cast<size_t>(c) + 8, 0);
  // Colour to one channel: resample the colour row, then take its luma (ITU-R 601, as PIL's
  // convert("L")).
  const bool to_luma = c == 3 && out.channels == 1;
  const int row_c = to_luma ? 3 : out.channels;
  s.row.resize(static_cast<size_t>(size) * row_c);
  const bool rgb_simd = simd && c == 3;
  for (int j = 0; j < size; ++j) {
    Tap t = tap(box.y, sy, j, h);
    const uint8_t* r0 = src + (static_cast<size_t>(t.at) * w + lo) * c;
    const uint8_t* r1 = h >= 2 ? r0 + static_cast<size_t>(w) * c : r0;
    const int wb = t.weight, wa = kOne - t.weight;
    uint16_t* v = s.blended.data();
    for (size_t x = 0; x < span; ++x)  // vectorised by the compiler
      v[x] = static_cast<uint16_t>(r0[x] * wa + r1[x] * wb);
    int done = 0;
#if defined(__SSE2__)
    if (rgb_simd) done = columns_rgb_sse2(v, s.col.data(), s.weights.data(), size, s.row.data());
#endif
    uint8_t* row = s.row.data();
    columns_portable(v, c, s.col.data(), s.weights.data(), done, size, row_c, row);
    if (to_luma)
      for (int i = 0; i < size; ++i)  // in place: pixel i's luma only overwrites red i
        row[i] = static_cast<uint8_t>(
            (299 * row[i] + 587 * row[size + i] + 114 * row[2 * size + i] + 500) / 1000);
    write_row(out, j, row);
  }
}

// Planar row -> interleaved pixels, with the channel count known to the compiler.
template <int N, typename T, typename F>
void interleave(const uint8_t* row, int s, T* p, F&& f) {
  for (int i = 0; i < s; ++i)
    for (int k = 0; k < N; ++k) p[i * N + k] = f(row[k * s + i], k);
}

template <typename T, typename F>
void interleave(const uint8_t* row, int s, int n, T* p, F&& f) {
  if (n == 3) return interleave<3>(row, s, p, f);
  if (n == 1) return interleave<1>(row, s, p, f);
  for (int i = 0; i < s; ++i)
    for (int k = 0; k < n; ++k) p[i * n + k] = f(row[k * s + i], k);
}

// Interleaved pixels -> planar row.
template <int N>
void deinterleave(const uint8_t* in, int s, int n, uint8_t* row) {
  const int c = N > 0 ? N : n;
  for (int i = 0; i < s; ++i)
    for (int k = 0; k < c; ++k) row[k * s + i] = in[i * c + k];
}

}  // namespace

void write_row(const ImageOut& out, int j, const uint8_t* row) {
  const int s = out.size, n = out.channels;
  const size_t plane = static_cast<size_t>(s) * s;
  if (!out.scale) {
    auto* d = static_cast<uint8_t*>(out.data);
    if (out.channels_last) {
      interleave(row, s, n, d + static_cast<size_t>(j) * s * n, [](uint8_t v, int) { return v; });
    } else {
      for (int k = 0; k < n; ++k)
        std::memcpy(d + k * plane + static_cast<size_t>(j) * s, row + k * s, s);
    }
    return;
  }
  auto* d = static_cast<float*>(out.data);
  if (out.channels_last) {
    interleave(row, s, n, d + static_cast<size_t>(j) * s * n,
               [&](uint8_t v, int k) { return v * out.scale[k] + out.bias[k]; });
  } else {
    for (int k = 0; k < n; ++k) {
      float* p = d + k * plane + static_cast<size_t>(j) * s;
      const uint8_t* r = row + k * s;
      const float a = out.scale[k], b = out.bias[k];
      for (int i = 0; i < s; ++i) p[i] = r[i] * a + b;  // vectorised by the compiler
    }
  }
}

void write_hwc(const ImageOut& out, const uint8_t* hwc) {
  const int s = out.size, n = out.channels;
  std::vector<uint8_t>& row = scratch().row;
  row.resize(static_cast<size_t>(s) * n);
  for (int j = 0; j < s; ++j) {
    const uint8_t* in = hwc + static_cast<size_t>(j) * s * n;
    (n == 3 ? deinterleave<3> : deinterleave<0>)(in, s, n, row.data());
    write_row(out, j, row.data());
  }
}

void write_black(const ImageOut& out) {
  std::vector<uint8_t>& row = scratch().row;
  row.assign(static_cast<size_t>(out.size) * out.channels, 0);
  for (int j = 0; j < out.size; ++j) write_row(out, j, row.data());
}

void resize_crop(const uint8_t* src, int h, int w, int c, const CropBox& box, const ImageOut& out) {
  resize(src, h, w, c, box, out, true);
}

void resize_crop(const uint8_t* src, int h, int w, int c, const CropBox& box, int size, int out_c,
                 uint8_t* out) {
  resize(src, h, w, c, box, ImageOut::hwc_u8(out, size, out_c), true);
}

namespace detail {
void resize_crop_portable(const uint8_t* src, int h, int w, int c, const CropBox& box,
                          const ImageOut& out) {
  resize(src, h, w, c, box, out, false);
}
}  // namespace detail

}  // namespace coatnet::data
