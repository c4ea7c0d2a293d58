// What training a model holds per rank, in bytes, before a run starts (`coatnet info
// --world-size W --batch B [--zero 0|1]`): the trainer's own buffers from the model's parameter
// shapes (under ZeRO-1 the optimizer state and the EMA are 1/W of them), and a step's peak
// working memory, measured on the CPU at one and two images and scaled.
//
//   MemoryPlan m = plan_memory(*net, spec, {.per_rank_batch = 64, .dtype = at::kBFloat16});
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "model/coatnet.h"

namespace coatnet::train {

struct MemoryPlan {
  int64_t params_bytes = 0;  // FlatParams::values: fp32, each parameter 64-byte aligned
  // FlatParams::grads, the same layout; under ZeRO-1 also the reduced gradients of the owned
  // range (train/zero.h).
  int64_t grads_bytes = 0;
  int64_t optimizer_bytes = 0;  // AdamW's two moments (fp32), of the owned range under ZeRO-1
  int64_t ema_bytes = 0;  // the EMA's parameters (the owned range) and buffers (train.ema_decay)
  // A step's peak working memory that grows with the batch (what forward keeps for backward,
  // and backward's temporaries at its peak): per_image_bytes × this rank's batch.
  int64_t activations_bytes = 0;
  int64_t per_image_bytes = 0;
  // A step's peak working memory whatever the batch: autocast's low-precision copies of the
  // weights, and per-layer temporaries.
  int64_t step_fixed_bytes = 0;
  int64_t total() const {
    return params_bytes + grads_bytes + optimizer_bytes + ema_bytes + activations_bytes +
           step_fixed_bytes;
  }
};

// How a step's working memory is measured: on the model itself, or on copies of it with one and
// two blocks per stage, extrapolated to its depths (blocks after the first in a stage have the
// same shapes, so what they keep for backward adds up). Auto: by depth for models of more than
// kDirectMaxParameters parameters (CoAtNet-6/7 would need their weights and gradients twice).
enum class StepMeasure { Auto, Direct, ByDepth };
constexpr int64_t kDirectMaxParameters = 1'000'000'000;

struct MemoryPlanOptions {
  int64_t per_rank_batch = 1;
  at::ScalarType dtype = at::kFloat;  // the compute dtype: float (fp32), bfloat16, half
  bool ema = false;
  int world = 1;      // ranks
  bool zero = false;  // optim.zero 1: the optimizer state split over them
  StepMeasure measure = StepMeasure::Auto;
};

// The trainer's buffers from `net`'s parameters (their shapes only), and a training step's peak
// (forward and backward) measured with PyTorch's profiler (memory events) on the CPU at 1 and 2
// images in training mode under autocast to `dtype`: the difference is one image's, the rest
// batch-independent. `net` runs two steps (measured directly) and is left as it was (BatchNorm
// statistics and gradients too).
MemoryPlan plan_memory(model::CoAtNet& net, const MemoryPlanOptions& options);

// Bytes of the flat fp32 layout of these parameter sizes (FlatParams' 64-byte alignment), padded
// to `shards` equal shards as FlatParams(model, shards) does.
int64_t flat_bytes(const std::vector<int64_t>& numels, int shards = 1);

}  // namespace coatnet::train
