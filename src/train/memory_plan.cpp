#include "train/memory_plan.h"

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <vector>

#include "train/flat_params.h"
#include "train/profile.h"

namespace coatnet::train {

namespace {

// A training step (forward, then backward of the mean squared logits) for `images` images in
// training mode under autocast to `dtype`: the most bytes it has allocated at once on the CPU.
// Gradients go into buffers allocated before (as the trainer's flat gradients are), so they are
// not counted.
int64_t step_peak(model::CoAtNet& net, int64_t images, at::ScalarType dtype) {
  const model::ModelSpec& s = net->spec;
  const at::Tensor x = at::randn({images, s.in_chans, s.image_size, s.image_size});
  return peak_cpu_bytes([&] {
    const bool low = dtype != at::kFloat;
    at::autocast::set_autocast_enabled(at::kCPU, low);
    if (low) at::autocast::set_autocast_dtype(at::kCPU, dtype);
    at::Tensor loss = net->forward(x).to(at::kFloat).pow(2).mean();
    at::autocast::set_autocast_enabled(at::kCPU, false);
    loss.backward();
    at::autocast::clear_cache();
  });
}

struct StepBytes {
  int64_t per_image = 0, fixed = 0;
};

// A training step's peak at 1 and 2 images: per image, and what does not depend on the batch.
StepBytes measure_step(model::CoAtNet& net, at::ScalarType dtype) {
  // Training-mode forwards update BatchNorm's running statistics: put them back after.
  std::vector<at::Tensor> buffers, saved;
  for (at::Tensor& t : net->buffers()) {
    buffers.push_back(t);
    saved.push_back(t.clone());
  }
  std::vector<at::Tensor> params = net->parameters();
  for (at::Tensor& p : params) p.mutable_grad() = at::zeros_like(p);
  const bool was_training = net->is_training();
  net->train();
  const int64_t one = step_peak(net, 1, dtype), two = step_peak(net, 2, dtype);
  net->train(was_training);
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved[i]);
  }
  for (at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  return {two - one, std::max<int64_t>(one - (two - one), 0)};
}

// The same, from copies of the model with one block per stage and with one more in each stage:
// (depth - 1) times each stage's extra block added to the one-block model's.
StepBytes measure_by_depth(model::ModelSpec spec, at::ScalarType dtype) {
  const std::vector<int> depths = spec.depths;
  std::fill(spec.depths.begin(), spec.depths.end(), 1);
  model::CoAtNet one(spec);
  const StepBytes base = measure_step(one, dtype);
  StepBytes out = base;
  for (size_t i = 0; i < depths.size(); ++i) {
    if (depths[i] == 1) continue;
    model::ModelSpec more = spec;
    more.depths[i] = 2;
    model::CoAtNet net(more);
    const StepBytes b = measure_step(net, dtype);
    out.per_image += (depths[i] - 1) * std::max<int64_t>(b.per_image - base.per_image, 0);
    out.fixed += (depths[i] - 1) * std::max<int64_t>(b.fixed - base.fixed, 0);
  }
  return out;
}

}  // namespace

int64_t flat_bytes(const std::vector<int64_t>& numels, int shards) {
  int64_t total = 0;
  for (int64_t n : numels) total += FlatParams::aligned(n);
  const int64_t unit = FlatParams::kAlignElements * shards;
  return (total + unit - 1) / unit * unit * static_cast<int64_t>(sizeof(float));
}

MemoryPlan plan_memory(model::CoAtNet& net, const MemoryPlanOptions& o) {
  MemoryPlan m;
  std::vector<int64_t> numels;
  int64_t buffer_bytes = 0;
  for (const at::Tensor& p : net->parameters())
    if (p.requires_grad()) numels.push_back(p.numel());  // what FlatParams holds
  for (const at::Tensor& b : net->buffers()) buffer_bytes += b.numel() * b.element_size();
  const int shards = o.zero ? o.world : 1;
  m.params_bytes = m.grads_bytes = flat_bytes(numels, shards);
  const int64_t owned = m.params_bytes / shards;  // the range each rank updates
  if (shards > 1) m.grads_bytes += owned;         // the reduce-scatter's target
  m.optimizer_bytes = 2 * owned;                  // exp_avg, exp_avg_sq
  m.ema_bytes = o.ema ? owned + buffer_bytes : 0;
  int64_t count = 0;
  for (int64_t n : numels) count += n;
  const bool by_depth = o.measure == StepMeasure::ByDepth ||
                        (o.measure == StepMeasure::Auto && count > kDirectMaxParameters);
  const StepBytes step =
      by_depth ? measure_by_depth(net->spec, o.dtype) : measure_step(net, o.dtype);
  m.per_image_bytes = step.per_image;
  m.step_fixed_bytes = step.fixed;
  m.activations_bytes = m.per_image_bytes * o.per_rank_batch;
  return m;
}

}  // namespace coatnet::train
