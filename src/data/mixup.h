// Mixup and CutMix on a batch (timm's semantics): with both enabled, CutMix is chosen with
// probability switch_prob; λ ~ Beta(α, α); targets become soft labels mixed with the same λ
// (CutMix: λ = the area kept). Each image is mixed with its pair partner, rows 2k and 2k+1 (the
// batch is shuffled, so a partner is a random other sample, as timm's mirror B-1-i is); in an
// odd batch the last row keeps its own image. Randomness is keyed by (seed, epoch, micro-step)
// and pairs never straddle two ranks' slices when each rank's batch is even, so every sample
// gets the same partner, λ and box at any world size.
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
MixInfo draw_mix(const MixOptions& o, int64_t epoch, int64_t step, int64_t h, int64_t w);
// Applies it: images (B, C, H, W, float) in place, with the pair partners; soft targets.
void mix_images(at::Tensor& images, const MixInfo& m);
at::Tensor mix_targets(const at::Tensor& soft, const MixInfo& m);
// The rows' partners: 2k <-> 2k+1, the last row of an odd batch itself; as the batch_prep kernel.
at::Tensor partners_of(const at::Tensor& rows);

// The ATen composite that cuda::prepare_batch fuses, and its reference: a uint8 batch (B, C,
// H, W) normalised as v·scale + bias (per channel, two rounded float steps, as the loader),
// mixed, in `dtype`, channels-last.
at::Tensor prepare_batch_composite(const at::Tensor& images, const at::Tensor& scale,
                                   const at::Tensor& bias, const MixInfo& m, at::ScalarType dtype);

// All three: mixes `images` in place and returns the mixed soft targets.
at::Tensor mix_batch(at::Tensor& images, const at::Tensor& targets, const MixOptions& o,
                     int64_t epoch, int64_t step, MixInfo* info = nullptr);

// Beta(a, a) from a keyed stream (Marsaglia–Tsang gamma), the same on every machine.
double keyed_beta(double a, uint64_t key);

}  // namespace coatnet::data
