// RandAugment operations: what each does at known magnitudes, and keyed determinism.
#include <gtest/gtest.h>

#include <numeric>

#include "data/randaugment.h"
#include "data/transform.h"

using namespace coatnet::data;

namespace {

std::vector<uint8_t> ramp(int h, int w, int c) {
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        img[(y * w + x) * c + k] = static_cast<uint8_t>(40 + 3 * x + y + 20 * k);
  return img;
}

}  // namespace

TEST(RandAugment, MagnitudeZeroGeometryAndEnhanceAreIdentity) {
  for (AugOp op :
       {AugOp::ShearX, AugOp::ShearY, AugOp::TranslateX, AugOp::TranslateY, AugOp::Rotate,
        AugOp::Brightness, AugOp::Color, AugOp::Contrast, AugOp::Sharpness, AugOp::Posterize}) {
    auto img = ramp(16, 20, 3), want = img;
    apply_aug_op(op, 0, 1, img.data(), 16, 20, 3);
    EXPECT_EQ(img, want) << aug_op_name(op);
  }
}

TEST(RandAugment, PointOpsDoWhatTheySay) {
  auto img = ramp(8, 8, 3);
  auto post = img;
  apply_aug_op(AugOp::Posterize, 30, 1, post.data(), 8, 8, 3);  // 8 - 4 = 4 bits kept
  for (size_t i = 0; i < img.size(); ++i) EXPECT_EQ(post[i], img[i] & 0xF0);
  auto sol = img;
  apply_aug_op(AugOp::Solarize, 15, 1, sol.data(), 8, 8, 3);  // threshold 127.5
  for (size_t i = 0; i < img.size(); ++i)
    EXPECT_EQ(sol[i], img[i] >= 127.5 ? 255 - img[i] : img[i]);
  auto dark = img;
  apply_aug_op(AugOp::Brightness, 30, -1, dark.data(), 8, 8, 3);  // factor 0.1
  EXPECT_LE(*std::max_element(dark.begin(), dark.end()), 26);
  auto ac = img;
  apply_aug_op(AugOp::AutoContrast, 0, 1, ac.data(), 8, 8, 3);
  EXPECT_EQ(*std::min_element(ac.begin(), ac.end()), 0);
  EXPECT_EQ(*std::max_element(ac.begin(), ac.end()), 255);
}

TEST(RandAugment, TranslateMovesPixelsAndFillsZero) {
  auto img = ramp(10, 331, 1);
  apply_aug_op(AugOp::TranslateX, 30, 1, img.data(), 10, 331, 1);  // 150 px to the right
  EXPECT_EQ(img[0], 0);
  EXPECT_EQ(img[160], ramp(10, 331, 1)[10]);
}

TEST(RandAugment, KeyedAndDeterministic) {
  auto a = ramp(32, 32, 3), b = a, c = a;
  rand_augment(2, 15, 42, a.data(), 32, 32, 3);
  rand_augment(2, 15, 42, b.data(), 32, 32, 3);
  EXPECT_EQ(a, b);
  int differ = 0;
  for (uint64_t k = 0; k < 10; ++k) {
    auto d = ramp(32, 32, 3);
    rand_augment(2, 15, 1000 + k, d.data(), 32, 32, 3);
    differ += d != a;
  }
  EXPECT_GE(differ, 7);
  // Through the transform: only in training, keyed by (seed, epoch, index).
  TransformOptions o;
  o.size = 16;
  o.randaugment_n = 2;
  o.randaugment_m = 15;
  auto src = ramp(16, 16, 3);
  std::vector<uint8_t> x(16 * 16 * 3), y(16 * 16 * 3);
  Decoder dec;
  dec.transform(src, "raw", 16, 16, 3, o, 1, 5, x.data());
  dec.transform(src, "raw", 16, 16, 3, o, 1, 5, y.data());
  EXPECT_EQ(x, y);
}
