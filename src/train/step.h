// The parts of a training step (train/trainer.cpp runs them): a batch on the device, the
// forward and backward passes of an optimizer step, and the count of skipped (non-finite) steps
// kept on the device.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/mixup.h"
#include "dist/comm.h"
#include "dist/grad_buckets.h"
#include "model/coatnet.h"
#include "train/precision.h"
#include "train/setup.h"
#include "train/zero.h"

namespace coatnet::train {

// A training batch on the device as the model takes it: normalised and mixed (Mixup/CutMix),
// by the batch_prep kernel in one pass (cast to `dtype`) or by the ATen ops; its targets soft
// (label smoothing, mixed with the same partners).
struct DeviceBatch {
  at::Tensor images, soft, valid;
};
DeviceBatch on_device(const data::Batch& batch, const data::MixInfo& m, data::Loader& loader,
                      const data::MixOptions& mix, const at::Device& device, at::ScalarType dtype,
                      bool batch_prep_kernel);

// The forward and backward passes of an optimizer step: optim.accum_steps micro-batches, whose
// backward hooks start each full gradient bucket's all-reduce (the last one's also waits for
// them). The loss is summed on the device, the data's sample hash on the host, both read at
// log steps.
class ForwardBackward {
 public:
  struct Waits {
    // Seconds waiting for the loader, and for the collectives: the gradient buckets and
    // (ZeRO-1) the parameter all-gather, which `gather` also counts alone.
    double data = 0, comm = 0, gather = 0;
  };
  // `gather` (ZeRO-1) is waited for once a step's first batch is on the device, just before
  // the forward pass reads the parameters.
  ForwardBackward(model::CoAtNetImpl& net, data::Loader& loader, dist::GradBuckets& buckets,
                  ParamsGather& gather, Precision& precision, const LoopOptions& loop,
                  const at::Device& device, int rank, bool batch_prep_kernel,
                  int64_t first_micro_step)
      : net_(net),
        loader_(loader),
        buckets_(buckets),
        gather_(gather),
        precision_(precision),
        loop_(loop),
        device_(device),
        rank_(rank),
        batch_prep_(batch_prep_kernel),
        micro_(first_micro_step) {
    loss_sum_ = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
    if (std::getenv("COATNET_FAULT_NAN_STEPS"))
      loss_factor_ = at::ones({}, at::TensorOptions().dtype(at::kFloat).device(device));
  }
  Waits run(int64_t step);  // the passes of optimizer step `step`
  // Its parts. next_batch: the next micro-batch loaded, mixed and on the device (`first`: the
  // step's first, which also drives ZeRO-1's all-gather); passes: forward and backward over it,
  // the gradient all-reduce started by the hooks, and finished when `last`. Only passes() runs
  // on the device alone: a CUDA graph holds it (train/graphed_step.h).
  DeviceBatch next_batch(bool first, Waits& w);
  void passes(const DeviceBatch& in, bool last, Waits& w);
  // The tests' NaN fault (COATNET_FAULT_NAN_STEPS) for `step`: a factor of the loss on the
  // device (1, or NaN), which a CUDA graph's replay reads too; run() sets it itself, a graph
  // sets it before each replay. Nothing when the fault is not asked for.
  void set_fault(int64_t step);
  // At a log step: the mean loss per step and rank, and the sample hash summed over ranks,
  // since the last log step (`steps` optimizer steps) — one all-reduce on the device and one
  // host read; the next window starts empty.
  struct Window {
    double loss = 0, data_hash = 0;
  };
  Window take_window(dist::Comm& comm, int64_t steps);
  int64_t epoch = 0;  // of the last batch

 private:
  model::CoAtNetImpl& net_;
  data::Loader& loader_;
  dist::GradBuckets& buckets_;
  ParamsGather& gather_;
  Precision& precision_;
  const LoopOptions& loop_;
  at::Device device_;
  int rank_;
  bool batch_prep_;
  int64_t micro_;
  at::Tensor loss_sum_;     // since the last log step, on the device
  at::Tensor loss_factor_;  // with COATNET_FAULT_NAN_STEPS: 1, or NaN at a faulty step
  double data_hash_ = 0;    // since the last log step
};

// Non-finite steps, counted on the device and read back only at log steps and saves, so that a
// step never waits for the host. found_inf is the step's decision (1: skipped), taken on the
// device by the precision plugin and the gradient norm.
class SkippedSteps {
 public:
  SkippedSteps(const at::Device& device, int64_t already, double max_in_a_row)
      : total_(already), max_in_a_row_(max_in_a_row) {
    const auto on = at::TensorOptions().dtype(at::kFloat).device(device);
    found_inf_ = at::zeros({}, on);
    window_ = at::zeros({}, on);
    run_ = at::zeros({}, on);
    most_ = at::zeros({}, on);
  }
  at::Tensor& begin_step() { return found_inf_.zero_(); }
  void end_step() {
    window_.add_(found_inf_);
    run_.add_(found_inf_).mul_(found_inf_);
    at::maximum_out(most_, most_, run_);
  }
  // One host read: the skipped steps since the last one (added to total()). Throws when
  // precision.max_bad_steps were skipped in a row: the run diverged.
  int64_t settle(const Precision& precision) {
    const at::Tensor counts = at::stack({window_, most_}).cpu();
    const auto window = static_cast<int64_t>(counts[0].item<float>());
    const auto most = static_cast<int64_t>(counts[1].item<float>());
    window_.zero_();
    most_.copy_(run_);
    total_ += window;
    if (most >= max_in_a_row_)
      throw std::runtime_error(
          "the gradients were not finite for " + std::to_string(most) +
          " steps in a row (precision.max_bad_steps, precision " + precision.name() +
          "); the run diverged — lower optim.lr, raise schedule.warmup_steps, or try bf16");
    return window;
  }
  int64_t total() const { return total_; }

 private:
  at::Tensor found_inf_, window_;
  at::Tensor run_;   // non-finite steps in a row, now
  at::Tensor most_;  // the longest such run since the last read
  int64_t total_;
  double max_in_a_row_;
};

// A 32-bit hash of each training sample index, summed over a log window and over ranks: equal
// windows of the data stream give equal sums at any world size (the resume tests compare it).
double sample_hash(const std::vector<int64_t>& indices);

// Fault injection for the tests: COATNET_FAULT_NAN_STEPS=A-B makes the loss of steps A..B
// (inclusive) NaN on every rank, so their gradients are not finite.
bool nan_fault(int64_t step);

}  // namespace coatnet::train
