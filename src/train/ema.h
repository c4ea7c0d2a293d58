// Exponential moving average of the weights (and of BatchNorm's running statistics), kept as
// one flat buffer beside FlatParams: one lerp per step. `swap()` exchanges it with the live
// weights, so the EMA model is evaluated by the same code as the model itself.
//
//   ModelEma ema(flat, *net, 0.9999);
//   ema.update(found_inf);        // after each optimizer step (found_inf 1: it was skipped)
//   ema.swap(); evaluate(...); ema.swap();
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "train/flat_params.h"

namespace coatnet::train {

class ModelEma {
 public:
  ModelEma(FlatParams& flat, torch::nn::Module& model, double decay);
  void update(const at::Tensor& found_inf);
  void swap();
  double decay() const { return decay_; }
  at::Tensor values;                // EMA of FlatParams::values
  std::vector<at::Tensor> buffers;  // EMA of the model's floating-point buffers
  std::vector<at::Tensor> live_buffers;

 private:
  FlatParams& flat_;
  double decay_;
};

}  // namespace coatnet::train
