// The crop-and-resize: the SIMD path gives exactly the portable path's pixels, both stay within
// 2.5 levels (mean 0.5) of an exact (double) bilinear resample, and every batch layout and dtype
// holds the same values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "data/resize.h"

using namespace coatnet::data;

namespace {

std::vector<uint8_t> noise(int h, int w, int c, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * c);
  for (auto& v : img) v = static_cast<uint8_t>(rng() & 0xff);
  return img;
}

// Exact bilinear sampling (align_corners=False, edges clamped), in doubles.
double reference(const std::vector<uint8_t>& img, int h, int w, int c, const CropBox& b, int size,
                 int j, int i, int k) {
  auto coord = [](double start, double len, int size, int o, int n) {
    return std::clamp(start + (o + 0.5) * len / size - 0.5, 0.0, n - 1.0);
  };
  double x = coord(b.x, b.w, size, b.flip ? size - 1 - i : i, w), y = coord(b.y, b.h, size, j, h);
  int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
  int x1 = std::min(x0 + 1, w - 1), y1 = std::min(y0 + 1, h - 1);
  double fx = x - x0, fy = y - y0;
  auto at = [&](int yy, int xx) { return img[(static_cast<size_t>(yy) * w + xx) * c + k]; };
  return (at(y0, x0) * (1 - fx) + at(y0, x1) * fx) * (1 - fy) +
         (at(y1, x0) * (1 - fx) + at(y1, x1) * fx) * fy;
}

struct Case {
  int h, w;
  CropBox box;
  int size;
};

std::vector<Case> cases() {
  std::vector<Case> out = {
      {1, 1, {0, 0, 1, 1, false}, 5},          {1, 9, {0, 0, 9, 1, true}, 4},
      {7, 1, {0, 0, 1, 7, false}, 3},          {40, 50, {0, 0, 50, 40, false}, 40},
      {40, 50, {3.5, 2.25, 17, 30, true}, 64}, {300, 200, {10, 20, 180, 260, false}, 224},
      {300, 200, {0, 0, 200, 300, true}, 13},  {64, 64, {60, 60, 4, 4, false}, 17},
  };
  std::mt19937 rng(7);
  for (int n = 0; n < 20; ++n) {
    int h = 2 + rng() % 120, w = 2 + rng() % 120;
    double bw = 1 + rng() % w, bh = 1 + rng() % h;
    out.push_back({h,
                   w,
                   {std::fmod(rng() / 1e3, w - bw + 1), std::fmod(rng() / 1e3, h - bh + 1), bw, bh,
                    rng() % 2 == 1},
                   1 + static_cast<int>(rng() % 40)});
  }
  return out;
}

}  // namespace

TEST(Resize, SimdEqualsPortableAndBothMatchExactBilinear) {
  double worst = 0, sum = 0, count = 0;
  for (const Case& t : cases()) {
    const int c = 3;
    auto img = noise(t.h, t.w, c, t.h * 1000 + t.w);
    std::vector<uint8_t> simd(static_cast<size_t>(t.size) * t.size * 3), portable(simd.size());
    resize_crop(img.data(), t.h, t.w, c, t.box, t.size, 3, simd.data());
    coatnet::data::detail::resize_crop_portable(img.data(), t.h, t.w, c, t.box,
                                                ImageOut::hwc_u8(portable.data(), t.size, 3));
    ASSERT_EQ(simd, portable) << t.h << "x" << t.w << "x" << c << " -> " << t.size;
    for (int j = 0; j < t.size; ++j)
      for (int i = 0; i < t.size; ++i)
        for (int k = 0; k < 3; ++k) {
          double want = reference(img, t.h, t.w, c, t.box, t.size, j, i, k);
          int got = simd[(static_cast<size_t>(j) * t.size + i) * 3 + k];
          worst = std::max(worst, std::abs(got - want));
          sum += std::abs(got - want);
          ++count;
        }
  }
  // Weights are rounded to 1/128 on each axis (at most 255/256 of a level each on noise, where
  // neighbours differ by up to 255) and the result once: never more than 2.5 levels.
  EXPECT_LT(worst, 2.5) << "levels off an exact bilinear resample";
  EXPECT_LT(sum / count, 0.5) << "mean levels off an exact bilinear resample";
}

TEST(Resize, GraySourcesReplicateAndColourToOneChannelIsItsLuma) {
  const CropBox box{5.5, 3, 40, 30, true};
  auto rgb = noise(48, 64, 3, 1);
  std::vector<uint8_t> a(32 * 32 * 3);
  resize_crop(rgb.data(), 48, 64, 3, box, 32, 3, a.data());
  // One channel: alone, or replicated to three.
  auto gray = noise(48, 64, 1, 2);
  std::vector<uint8_t> g1(32 * 32), g3(32 * 32 * 3);
  resize_crop(gray.data(), 48, 64, 1, box, 32, 1, g1.data());
  resize_crop(gray.data(), 48, 64, 1, box, 32, 3, g3.data());
  for (size_t p = 0; p < g1.size(); ++p)
    for (int k = 0; k < 3; ++k) ASSERT_EQ(g3[p * 3 + k], g1[p]) << p;
  // Colour to one channel: the luma of the colour output.
  std::vector<uint8_t> l1(32 * 32);
  resize_crop(rgb.data(), 48, 64, 3, box, 32, 1, l1.data());
  for (size_t p = 0; p < l1.size(); ++p)
    ASSERT_EQ(l1[p], (299 * a[3 * p] + 587 * a[3 * p + 1] + 114 * a[3 * p + 2] + 500) / 1000) << p;
}

TEST(Resize, EveryLayoutAndDtypeHoldsTheSameValues) {
  const int s = 24, n = 3;
  const CropBox box{2, 1, 50, 37, false};
  auto rgb = noise(40, 60, 3, 3);
  std::vector<uint8_t> hwc(s * s * n), chw(hwc.size());
  std::vector<float> fhwc(hwc.size()), fchw(hwc.size());
  const float scale[3] = {0.5f, 2.0f, -1.0f}, bias[3] = {1.0f, -3.0f, 0.25f};
  resize_crop(rgb.data(), 40, 60, 3, box, s, n, hwc.data());
  resize_crop(rgb.data(), 40, 60, 3, box, {chw.data(), s, n, false, nullptr, nullptr});
  resize_crop(rgb.data(), 40, 60, 3, box, {fhwc.data(), s, n, true, scale, bias});
  resize_crop(rgb.data(), 40, 60, 3, box, {fchw.data(), s, n, false, scale, bias});
  for (int j = 0; j < s; ++j)
    for (int i = 0; i < s; ++i)
      for (int k = 0; k < n; ++k) {
        const size_t at_hwc = (static_cast<size_t>(j) * s + i) * n + k;
        const size_t at_chw = (static_cast<size_t>(k) * s + j) * s + i;
        const uint8_t v = hwc[at_hwc];
        ASSERT_EQ(chw[at_chw], v);
        ASSERT_FLOAT_EQ(fhwc[at_hwc], v * scale[k] + bias[k]);
        ASSERT_FLOAT_EQ(fchw[at_chw], v * scale[k] + bias[k]);
      }
  // An HWC image written into a float CHW slot, and black.
  std::vector<float> back(hwc.size());
  write_hwc({back.data(), s, n, false, scale, bias}, hwc.data());
  EXPECT_EQ(back, fchw);
  write_black({back.data(), s, n, false, scale, bias});
  for (int k = 0; k < n; ++k) EXPECT_EQ(back[static_cast<size_t>(k) * s * s + 5], bias[k]);
}

TEST(Resize, UnsupportedChannelCountsAreRefused) {
  std::vector<uint8_t> src(4 * 4 * 3), out(2 * 2 * 3);
  try {
    resize_crop(src.data(), 4, 4, 2, {0, 0, 4, 4, false}, 2, 3, out.data());
    FAIL() << "2 -> 3 channels was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("2 -> 3 channels"), std::string::npos) << e.what();
  }
}
