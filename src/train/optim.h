// The paper's optimizer recipe on the flat parameter buffer: AdamW (decoupled weight decay,
// none on norms, biases and bias tables), gradient clipping by global norm, and the learning
// rate schedule (linear warm-up in steps, then cosine or linear decay to a minimum).
//
//   AdamW opt(flat, {.lr = 1e-3, .weight_decay = 0.05});
//   double norm = clip_grad_norm(flat.grads, 1.0);
//   opt.step(lr_at(schedule, step));
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "train/flat_params.h"

namespace coatnet::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.05;
};

// torch.optim.AdamW's update, on the whole flat buffer at once.
class AdamW {
 public:
  AdamW(FlatParams& flat, AdamWOptions options);
  void step(double lr);
  int64_t steps() const { return steps_; }
  at::Tensor exp_avg, exp_avg_sq;  // the optimizer state, laid out as FlatParams::values
  void set_steps(int64_t s) { steps_ = s; }

 private:
  FlatParams& flat_;
  AdamWOptions opt_;
  int64_t steps_ = 0;
};

// Scales `grads` so that its L2 norm is at most max_norm (0 = off); returns the norm before.
// The gradients are already averaged over ranks, so this is the global norm on every rank.
double clip_grad_norm(at::Tensor& grads, double max_norm);

struct ScheduleOptions {
  std::string type = "cosine";  // cosine | linear | constant
  double lr = 1e-3, min_lr = 0;
  int64_t warmup_steps = 0, total_steps = 1;
};
// The learning rate of optimizer step `step` (0-based).
double lr_at(const ScheduleOptions& s, int64_t step);

}  // namespace coatnet::train
