// src/cuda/batch_prep against its ATen composite: the composite (on CPU, always) against the
// loader's normalisation and data::mix_batch, and the kernel (on a GPU) against the composite
// for every output dtype, with Mixup, CutMix and neither, on fresh random batches.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>

#include "cuda/batch_prep.h"
#include "cuda/kernel_checks.h"
#include "data/mixup.h"

using namespace coatnet;
using test::max_rel_diff;

namespace {

struct Case {
  at::Tensor u8, scale, bias;
};

// A uint8 batch as the loader hands it over with data.channels_last: NHWC memory.
Case random_case(int64_t b, int64_t c, int64_t h, int64_t w, const at::Device& device) {
  Case k;
  k.u8 = at::randint(0, 256, {b, c, h, w}, at::kByte).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor mean = at::rand({c}) * 0.5 + 0.25, std = at::rand({c}) * 0.2 + 0.2;
  k.scale = (1.0 / (255.0 * std)).to(at::kFloat);
  k.bias = (-mean / std).to(at::kFloat);
  k.u8 = k.u8.to(device);
  k.scale = k.scale.to(device);
  k.bias = k.bias.to(device);
  return k;
}

std::vector<data::MixInfo> mixes(int64_t h, int64_t w) {
  data::MixOptions mixup, cutmix;
  mixup.mixup_alpha = 0.8;
  cutmix.cutmix_alpha = 1.0;
  return {data::MixInfo{}, data::draw_mix(mixup, 0, 3, h, w), data::draw_mix(cutmix, 1, 7, h, w)};
}

}  // namespace

TEST(BatchPrep, CompositeIsTheLoadersNormalisationThenMixBatch) {
  at::manual_seed(11);
  Case k = random_case(6, 3, 9, 11, at::kCPU);
  for (const data::MixInfo& m : mixes(9, 11)) {
    at::Tensor got = data::prepare_batch_composite(k.u8, k.scale, k.bias, m, at::kFloat);
    EXPECT_TRUE(got.is_contiguous(at::MemoryFormat::ChannelsLast));
    at::Tensor ref = k.u8.to(at::kFloat) * k.scale.view({1, 3, 1, 1});
    ref = ref + k.bias.view({1, 3, 1, 1});
    data::mix_images(ref, m);
    EXPECT_TRUE(at::equal(got, ref)) << "mixed " << m.mixed << " cutmix " << m.cutmix;
  }
  // The mixes drawn are the ones the tests mean: Mixup with 0 < λ < 1, a CutMix box.
  auto m = mixes(9, 11);
  EXPECT_TRUE(m[1].mixed && !m[1].cutmix && m[1].lam > 0 && m[1].lam < 1);
  EXPECT_TRUE(m[2].cutmix && m[2].y1 > m[2].y0 && m[2].x1 > m[2].x0);
}

TEST(BatchPrep, KernelMatchesTheCompositeOnGpu) {
  if (!cuda::kernels_built()) GTEST_SKIP() << "built without the CUDA kernels (no nvcc)";
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU visible: the kernel needs one";
  const at::Device gpu(at::kCUDA, 0);
  // float32 to its rounding (the composite may fuse Mixup's multiply-add), bf16 and fp16 to
  // one rounding of the same float32 value, relative to the batch's scale.
  const std::vector<std::pair<at::ScalarType, double>> dtypes = {
      {at::kFloat, 1e-6}, {at::kBFloat16, std::ldexp(1.0, -8)}, {at::kHalf, std::ldexp(1.0, -11)}};
  for (int trial = 0; trial < 3; ++trial) {
    at::manual_seed(100 + trial);
    const int64_t b = 4 + trial, h = 31 + 8 * trial, w = 29 + 5 * trial;
    Case k = random_case(b, 3, h, w, gpu);
    for (const data::MixInfo& m : mixes(h, w))
      for (const auto& [dtype, tol] : dtypes) {
        at::Tensor got = cuda::prepare_batch(k.u8, k.scale, k.bias, m, dtype);
        at::Tensor ref = data::prepare_batch_composite(k.u8, k.scale, k.bias, m, dtype);
        ASSERT_EQ(got.scalar_type(), dtype);
        EXPECT_TRUE(got.is_contiguous(at::MemoryFormat::ChannelsLast));
        EXPECT_FALSE(got.isnan().any().item<bool>());
        EXPECT_LE(max_rel_diff(got, ref), tol)
            << c10::toString(dtype) << " mixed " << m.mixed << " cutmix " << m.cutmix;
      }
    // An NCHW (non-channels-last) input reads through its strides.
    at::Tensor nchw = k.u8.contiguous();
    EXPECT_LE(max_rel_diff(cuda::prepare_batch(nchw, k.scale, k.bias, {}, at::kFloat),
                           data::prepare_batch_composite(nchw, k.scale, k.bias, {}, at::kFloat)),
              1e-6);
  }
}
