// Exponential moving average of the weights (and of BatchNorm's running statistics), kept as
// one flat buffer beside FlatParams: one lerp per step. `swap()` exchanges it with the live
// weights, so the EMA model is evaluated by the same code as the model itself.
//
//   ModelEma ema(flat, *net, 0.9999);
//   ema.update(found_inf);        // after each optimizer step (found_inf 1: it was skipped)
//   ema.swap(); evaluate(...); ema.swap();
//
// Under ZeRO-1 (train/zero.h) each rank keeps the EMA of the range it owns; swap() then
// all-gathers the whole EMA into the live weights (collective) and the second swap() puts the
// live weights back.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "checkpoint/state.h"
#include "dist/comm.h"
#include "dist/partition.h"
#include "train/flat_params.h"

namespace coatnet::train {

class ModelEma {
 public:
  ModelEma(FlatParams& flat, torch::nn::Module& model, double decay);
  ModelEma(FlatParams& flat, torch::nn::Module& model, double decay, dist::Partition part,
           dist::Comm* comm);
  void update(const at::Tensor& found_inf);
  void swap();
  double decay() const { return decay_; }
  // "ema" and "ema_buffers" into a checkpoint's state; a checkpoint without them (saved with
  // train.ema_decay 0) starts the EMA from the loaded weights.
  void save(checkpoint::State& state);
  at::Tensor values;                // EMA of the owned range of FlatParams::values
  std::vector<at::Tensor> buffers;  // EMA of the model's floating-point buffers
  std::vector<at::Tensor> live_buffers;
  std::vector<std::string> buffer_names;

 private:
  at::Tensor owned_live() const;  // the owned range of the live weights
  FlatParams& flat_;
  double decay_;
  dist::Partition part_;
  dist::Comm* comm_;
  at::Tensor swapped_out_;  // sharded: the live weights while the EMA is swapped in
};

}  // namespace coatnet::train
