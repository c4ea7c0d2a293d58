#include "train/optim.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace coatnet::train {

AdamW::AdamW(FlatParams& flat, AdamWOptions options)
    : AdamW(flat, options, dist::Partition{0, 1, flat.numel()}, flat.grads) {}

AdamW::AdamW(FlatParams& flat, AdamWOptions options, dist::Partition part, at::Tensor grads)
    : flat_(flat), opt_(options), part_(part), grads_(std::move(grads)) {
  if (part_.end() > flat.numel() || grads_.numel() != part_.shard)
    throw std::invalid_argument("AdamW: the owned range [" + std::to_string(part_.begin()) + ", " +
                                std::to_string(part_.end()) + ") of " +
                                std::to_string(flat.numel()) + " flat elements, with " +
                                std::to_string(grads_.numel()) + " gradient elements");
  exp_avg = at::zeros({part_.shard}, flat.values.options());
  exp_avg_sq = at::zeros({part_.shard}, flat.values.options());
  steps_ = at::zeros({}, flat.values.options());
  lr_ = at::zeros({}, flat.values.options().dtype(at::kFloat));
  // Runs of the owned range with and without decay, at offsets from its start.
  Group decay{opt_.weight_decay, {}}, no_decay{0.0, {}};
  for (const FlatEntry& e : flat.entries) {
    const int64_t lo = std::max(e.offset, part_.begin()) - part_.begin();
    const int64_t hi = std::min(e.offset + e.numel, part_.end()) - part_.begin();
    if (hi <= lo) continue;
    std::vector<Run>& runs = (e.decay ? decay : no_decay).runs;
    if (!runs.empty() && runs.back().offset + runs.back().numel == lo)
      runs.back().numel += hi - lo;
    else
      runs.push_back({lo, hi - lo});
  }
  for (Group* g : {&decay, &no_decay})
    if (!g->runs.empty()) groups_.push_back(std::move(*g));
}

void AdamW::set_learning_rate(double lr) {
  lr_.fill_(lr);
}

void AdamW::step(double lr, const at::Tensor& found_inf) {
  set_learning_rate(lr);
  step(found_inf);
}

void AdamW::refresh_views() {
  const std::array<const void*, 5> bases{flat_.values.data_ptr(), grads_.data_ptr(),
                                         exp_avg.data_ptr(), exp_avg_sq.data_ptr(),
                                         steps_.data_ptr()};
  if (bases == view_bases_) return;  // none yet: the bases start null
  views_.clear();
  for (const Group& g : groups_) {
    GroupViews w;
    for (const Run& r : g.runs) {
      w.p.push_back(flat_.values.narrow(0, part_.begin() + r.offset, r.numel));
      w.grad.push_back(grads_.narrow(0, r.offset, r.numel));
      w.m.push_back(exp_avg.narrow(0, r.offset, r.numel));
      w.v.push_back(exp_avg_sq.narrow(0, r.offset, r.numel));
      w.steps.push_back(steps_);
    }
    views_.push_back(std::move(w));
  }
  view_bases_ = bases;
}

void AdamW::step(const at::Tensor& found_inf) {
  at::NoGradGuard no_grad;
  refresh_views();
  // As torch.optim.AdamW(fused=True): count the step first, take it back if it was skipped.
  steps_.add_(1);
  for (size_t i = 0; i < groups_.size(); ++i) {
    GroupViews& w = views_[i];
    at::_fused_adamw_(w.p, w.grad, w.m, w.v, /*max_exp_avg_sqs=*/{}, w.steps, lr_, opt_.beta1,
                      opt_.beta2, groups_[i].weight_decay, opt_.eps, /*amsgrad=*/false,
                      /*maximize=*/false, /*grad_scale=*/std::nullopt, found_inf);
  }
  steps_.sub_(found_inf);
}

int64_t AdamW::steps() const {
  return static_cast<int64_t>(steps_.item<float>());
}

void AdamW::set_steps(int64_t s) {
  steps_.fill_(static_cast<double>(s));
}

void AdamW::save(checkpoint::State& state) const {
  const int64_t total = part_.sharded() ? flat_.numel() : -1;  // held in part, or whole
  state.flat.push_back({"exp_avg", exp_avg, nullptr, part_.begin(), total});
  state.flat.push_back({"exp_avg_sq", exp_avg_sq, nullptr, part_.begin(), total});
  state.optimizer_steps = steps();
}

void AdamW::load(const checkpoint::State& state) {
  set_steps(state.optimizer_steps);
}

at::Tensor clip_grad_norm(at::Tensor& grads, double max_norm, at::Tensor& found_inf,
                          dist::Comm* ranges_over) {
  at::NoGradGuard no_grad;
  at::Tensor norm = grads.norm();
  if (ranges_over && ranges_over->size() > 1) {
    // One element on the device: on NCCL an all-reduce ordered on the stream, no host wait.
    at::Tensor squares = norm.square().reshape({1});
    ranges_over->allreduce(squares, "gradient norm (ZeRO-1)");
    norm = squares.sqrt().reshape({});
  }
  found_inf.copy_(at::maximum(found_inf, norm.isfinite().logical_not().to(found_inf.dtype())));
  if (max_norm > 0) grads.mul_((max_norm / (norm + 1e-6)).clamp_max_(1.0));
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
