// The paper's optimizer recipe on the flat parameter buffer: AdamW (decoupled weight decay,
// none on norms, biases and bias tables), gradient clipping by global norm, and the learning
// rate schedule (linear warm-up in steps, then cosine or linear decay to a minimum).
//
//   AdamW opt(flat, {.weight_decay = 0.05});          // or, ZeRO-1: (flat, options, part, owned)
//   at::Tensor found_inf = at::zeros({}, flat.values.options());   // 1 = skip this step
//   at::Tensor norm = clip_grad_norm(flat.grads, 1.0, found_inf);
//   opt.step(lr_at(schedule, step), found_inf);
//
// Nothing here reads a value back to the host: whether a step is taken is decided on the
// device, so a GPU step never waits for the CPU (torch.nn.utils.clip_grad_norm_ and
// torch.optim.AdamW(fused=True) work the same way).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/state.h"
#include "dist/comm.h"
#include "dist/partition.h"
#include "train/flat_params.h"

namespace coatnet::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.05;
};

// torch.optim.AdamW's update through ATen's fused kernel (_fused_adamw_, CPU and CUDA): one
// multi-tensor launch per weight-decay group over contiguous runs of the flat buffer.
// Under ZeRO-1 (train/zero.h) it owns one range of the flat buffer: the moments hold that range
// only, `grads` is the reduced gradient of that range, and step() updates that range of the
// parameters (the others are all-gathered from their owners afterwards).
class AdamW {
 public:
  AdamW(FlatParams& flat, AdamWOptions options);  // the whole buffer, flat.grads
  AdamW(FlatParams& flat, AdamWOptions options, dist::Partition part, at::Tensor grads);
  // Updates every parameter unless found_inf (0-dim float32 on the parameters' device) is 1:
  // then parameters, moments and the step count stay as they were.
  void step(double lr, const at::Tensor& found_inf);
  // The same in two parts, for a CUDA graph of the step (train.cuda_graph), which holds the
  // second only: the rate goes into a device scalar (float32, as AdamW reads it either way), and
  // the update reads it there.
  void set_learning_rate(double lr);
  void step(const at::Tensor& found_inf);
  int64_t steps() const;  // a host read: for checkpoints and reports, not for the loop
  void set_steps(int64_t s);
  // The moments ("exp_avg", "exp_avg_sq": the owned range of a tensor laid out as
  // FlatParams::values) and the step count into a checkpoint's state; after a load, the step
  // count back (the moments are loaded in place).
  void save(checkpoint::State& state) const;
  void load(const checkpoint::State& state);
  const dist::Partition& partition() const { return part_; }
  at::Tensor exp_avg, exp_avg_sq;  // the optimizer state of the owned range

 private:
  struct Run {
    int64_t offset, numel;
  };
  struct Group {
    double weight_decay;
    std::vector<Run> runs;
  };
  struct GroupViews {  // a group's runs as views of the five buffers, fused AdamW's lists
    std::vector<at::Tensor> p, grad, m, v, steps;
  };
  void refresh_views();
  FlatParams& flat_;
  AdamWOptions opt_;
  dist::Partition part_;
  at::Tensor grads_;           // of the owned range
  std::vector<Group> groups_;  // maximal runs of the flat buffer with and without decay
  at::Tensor steps_;           // float32, 0-dim, on the parameters' device
  at::Tensor lr_;              // float32, 0-dim, on the parameters' device
  // The views of groups_, made once rather than at every step: 4 narrow() calls a run, about
  // 500 a step for coatnet_0, were host time a GPU step launched eagerly waits for. Made again
  // if a buffer was replaced (exp_avg and exp_avg_sq are public), told by its data pointer.
  std::vector<GroupViews> views_;
  std::array<const void*, 5> view_bases_{};
};

// Scales `grads` by min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_ does
// (max_norm 0 = off) and returns the norm before, as a 0-dim tensor on the device. A norm
// that is not finite sets found_inf to 1 (the step is then skipped). The gradients are
// already averaged over ranks, so this is the global norm on every rank. Under ZeRO-1 each
// rank holds one range of them: pass the comm, and the squares are summed over the ranks.
at::Tensor clip_grad_norm(at::Tensor& grads, double max_norm, at::Tensor& found_inf,
                          dist::Comm* ranges_over = nullptr);

struct ScheduleOptions {
  std::string type = "cosine";  // cosine | linear | constant
  double lr = 1e-3, min_lr = 0;
  int64_t warmup_steps = 0, total_steps = 1;
};
// The learning rate of optimizer step `step` (0-based).
double lr_at(const ScheduleOptions& s, int64_t step);

}  // namespace coatnet::train
