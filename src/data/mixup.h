// Mixup and CutMix on a batch (timm's semantics): with both enabled, CutMix is chosen with
// probability switch_prob; λ ~ Beta(α, α); each image is mixed with the batch's mirror
// (row B-1-i); targets become soft labels mixed with the same λ (CutMix: λ = the area kept).
// Randomness is keyed by (seed, epoch, step, rank): reproducible, and each rank mixes its own
// slice of the global batch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace coatnet::data {

struct MixOptions {
  double mixup_alpha = 0.0;   // 0 = off
  double cutmix_alpha = 0.0;  // 0 = off
  double switch_prob = 0.5;
  double label_smoothing = 0.0;
  int64_t num_classes = 0;
  uint64_t seed = 0;
};

struct MixInfo {
  bool mixed = false;  // false: Mixup and CutMix are off, nothing changes
  double lam = 1.0;
  bool cutmix = false;
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;  // CutMix box (rows [y0,y1), columns [x0,x1))
};

// Soft targets (B, num_classes) for class indices (B) or multi-hot targets (B, K), smoothed:
// one-hot·(1-ε) + ε/K. Used with or without mixing.
at::Tensor soft_targets(const at::Tensor& targets, int64_t num_classes, double smoothing);

// The mixing of one micro-batch, drawn from the keyed stream (images H×W): which of Mixup and
// CutMix, λ, and CutMix's box (λ then the area kept).
MixInfo draw_mix(const MixOptions& o, int64_t epoch, int64_t step, int rank, int64_t h, int64_t w);
// Applies it: images (B, C, H, W, float) in place, with the batch's mirror; soft targets.
void mix_images(at::Tensor& images, const MixInfo& m);
at::Tensor mix_targets(const at::Tensor& soft, const MixInfo& m);

// The ATen composite that cuda::prepare_batch fuses, and its reference: a uint8 batch (B, C,
// H, W) normalised as v·scale + bias (per channel, two rounded float steps, as the loader),
// mixed, in `dtype`, channels-last.
at::Tensor prepare_batch_composite(const at::Tensor& images, const at::Tensor& scale,
                                   const at::Tensor& bias, const MixInfo& m, at::ScalarType dtype);

// All three: mixes `images` in place and returns the mixed soft targets.
at::Tensor mix_batch(at::Tensor& images, const at::Tensor& targets, const MixOptions& o,
                     int64_t epoch, int64_t step, int rank, MixInfo* info = nullptr);

// Beta(a, a) from a keyed stream (Marsaglia–Tsang gamma), the same on every machine.
double keyed_beta(double a, uint64_t key);

}  // namespace coatnet::data
