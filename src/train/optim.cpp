#include "train/optim.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace coatnet::train {

AdamW::AdamW(FlatParams& flat, AdamWOptions options) : flat_(flat), opt_(options) {
  exp_avg = at::zeros_like(flat.values);
  exp_avg_sq = at::zeros_like(flat.values);
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++steps_;
  at::Tensor& p = flat_.values;
  const at::Tensor& g = flat_.grads;
  if (opt_.weight_decay > 0) p.addcmul_(p, flat_.decay_mask, -lr * opt_.weight_decay);
  exp_avg.lerp_(g, 1 - opt_.beta1);
  exp_avg_sq.mul_(opt_.beta2).addcmul_(g, g, 1 - opt_.beta2);
  const double bias1 = 1 - std::pow(opt_.beta1, static_cast<double>(steps_));
  const double bias2 = 1 - std::pow(opt_.beta2, static_cast<double>(steps_));
  at::Tensor denom = (exp_avg_sq.sqrt() / std::sqrt(bias2)).add_(opt_.eps);
  p.addcdiv_(exp_avg, denom, -lr / bias1);
}

double clip_grad_norm(at::Tensor& grads, double max_norm) {
  at::NoGradGuard no_grad;
  const double norm = grads.norm().item<double>();
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1) grads.mul_(coef);
  }
  return norm;
}

double lr_at(const ScheduleOptions& s, int64_t step) {
  if (step < s.warmup_steps) return s.lr * static_cast<double>(step + 1) / s.warmup_steps;
  if (s.type == "constant") return s.lr;
  const int64_t decay_steps = std::max<int64_t>(1, s.total_steps - s.warmup_steps);
  const double p = std::clamp(static_cast<double>(step - s.warmup_steps) / decay_steps, 0.0, 1.0);
  if (s.type == "cosine") return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1 + std::cos(M_PI * p));
  if (s.type == "linear") return s.lr + (s.min_lr - s.lr) * p;
  throw std::invalid_argument("schedule.type = '" + s.type + "': expected cosine|linear|constant");
}

}  // namespace coatnet::train
