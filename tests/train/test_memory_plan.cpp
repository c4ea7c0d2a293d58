// train::plan_memory: the trainer's buffers equal to what FlatParams, AdamW and the EMA really
// allocate (whole, and under ZeRO-1 at 3 ranks), and a step's peak measured linear in the batch,
// smaller in bf16, with the model left as it was (BatchNorm statistics, no gradients).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "model/coatnet.h"
#include "train/flat_params.h"
#include "train/memory_plan.h"
#include "train/optim.h"
#include "train/tiny_spec.h"

using namespace coatnet;
using coatnet::test::tiny_spec;

TEST(MemoryPlan, FlatBytesAlignEachParameterTo64Bytes) {
  EXPECT_EQ(train::flat_bytes({1, 16, 17}), (16 + 16 + 32) * 4);
  EXPECT_EQ(train::flat_bytes({}), 0);
}

TEST(MemoryPlan, TrainingStateIsWhatTheTrainerAllocates) {
  model::CoAtNet net(tiny_spec());
  for (const int world : {1, 3}) {
    const bool zero = world > 1;
    SCOPED_TRACE("world " + std::to_string(world) + (zero ? ", ZeRO-1" : ""));
    const train::MemoryPlan m = train::plan_memory(net, {4, at::kFloat, /*ema=*/true, world, zero});
    model::CoAtNet other(tiny_spec());
    train::FlatParams flat(*other, world);  // as RunParts builds them (train/run_parts.cpp)
    const auto part = dist::Partition::even(flat.numel(), world - 1, world);
    const at::Tensor owned = zero ? at::zeros({part.shard}) : flat.grads;
    train::AdamW adamw(flat, {}, part, owned);
    EXPECT_EQ(m.params_bytes, flat.values.numel() * 4);
    EXPECT_EQ(m.grads_bytes, (flat.grads.numel() + (zero ? owned.numel() : 0)) * 4);
    EXPECT_EQ(m.optimizer_bytes, (adamw.exp_avg.numel() + adamw.exp_avg_sq.numel()) * 4);
    int64_t buffers = 0;
    for (const at::Tensor& b : other->buffers()) buffers += b.numel() * b.element_size();
    EXPECT_EQ(m.ema_bytes, part.shard * 4 + buffers);  // ModelEma keeps the owned range
    EXPECT_EQ(train::plan_memory(net, {4, at::kFloat, false, world, zero}).ema_bytes, 0);
  }
  // The goal of ZeRO-1: the optimizer state per rank falls as 1/W.
  const int64_t one = train::plan_memory(net, {1, at::kFloat, false, 1, false}).optimizer_bytes;
  const int64_t eight = train::plan_memory(net, {1, at::kFloat, false, 8, true}).optimizer_bytes;
  EXPECT_NEAR(static_cast<double>(eight) / one, 1.0 / 8, 0.01);
}

TEST(MemoryPlan, ActivationsScaleWithTheBatchAndShrinkInBfloat16) {
  model::CoAtNet net(tiny_spec());
  const train::MemoryPlan f32 = train::plan_memory(net, {8, at::kFloat, false});
  const train::MemoryPlan b16 = train::plan_memory(net, {8, at::kBFloat16, false});
  std::printf(
      "tiny model, per image: fp32 %lld bytes, bf16 %lld bytes; fixed %lld, %lld\n",
      static_cast<long long>(f32.per_image_bytes), static_cast<long long>(b16.per_image_bytes),
      static_cast<long long>(f32.step_fixed_bytes), static_cast<long long>(b16.step_fixed_bytes));
  // At least the input image and every stage's output are kept: 1x32x32 floats and more.
  EXPECT_GT(f32.per_image_bytes, 32 * 32 * 4);
  EXPECT_EQ(f32.activations_bytes, 8 * f32.per_image_bytes);
  EXPECT_LT(b16.per_image_bytes, f32.per_image_bytes);
  // The bf16 copies of the conv and linear weights are kept through the step.
  EXPECT_GT(b16.step_fixed_bytes, f32.step_fixed_bytes);
  // Measured, so deterministic: the same model measured again gives the same bytes.
  EXPECT_EQ(train::plan_memory(net, {8, at::kFloat, false}).per_image_bytes, f32.per_image_bytes);
}

// CoAtNet-6/7 are planned from copies with one and two blocks per stage: on a model small enough
// to measure both ways, that agrees with measuring the model itself.
TEST(MemoryPlan, ByDepthAgreesWithTheDirectMeasurement) {
  model::ModelSpec spec = tiny_spec();
  spec.depths = {2, 3, 3, 2};
  model::CoAtNet net(spec);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    train::MemoryPlanOptions o{8, dtype, false};
    o.measure = train::StepMeasure::Direct;
    const train::MemoryPlan direct = train::plan_memory(net, o);
    o.measure = train::StepMeasure::ByDepth;
    const train::MemoryPlan by_depth = train::plan_memory(net, o);
    std::printf("%s per image: direct %lld, by depth %lld bytes; fixed %lld, %lld\n",
                dtype == at::kFloat ? "fp32" : "bf16",
                static_cast<long long>(direct.per_image_bytes),
                static_cast<long long>(by_depth.per_image_bytes),
                static_cast<long long>(direct.step_fixed_bytes),
                static_cast<long long>(by_depth.step_fixed_bytes));
    EXPECT_NEAR(static_cast<double>(by_depth.per_image_bytes) / direct.per_image_bytes, 1.0, 0.05);
    EXPECT_NEAR(static_cast<double>(by_depth.total()) / direct.total(), 1.0, 0.05);
    EXPECT_EQ(by_depth.params_bytes, direct.params_bytes);  // the state from the shapes alike
  }
}

TEST(MemoryPlan, LeavesTheModelAsItWas) {
  model::CoAtNet net(tiny_spec());
  net->eval();
  std::vector<at::Tensor> before;
  for (const at::Tensor& b : net->buffers()) before.push_back(b.clone());
  (void)train::plan_memory(net, {2, at::kFloat, false});
  EXPECT_FALSE(net->is_training());
  for (const at::Tensor& p : net->parameters()) EXPECT_FALSE(p.grad().defined());
  size_t i = 0;
  for (const at::Tensor& b : net->buffers()) EXPECT_TRUE(at::equal(b, before[i++]));
}
