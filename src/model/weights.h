// Loading and saving model weights by name (timm's state_dict keys), strictly: a missing,
// unexpected or mis-shaped tensor is an error naming it. Relative position bias tables made for
// another image size are resized (bilinear) instead of rejected, and a missing BatchNorm
// `num_batches_tracked` is set to 0, as PyTorch's load_state_dict does.
#pragma once

#include <torch/nn/module.h>

#include "model/safetensors.h"

namespace coatnet::model {

struct WeightsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parameters then buffers, by full dotted name (stem.conv1.weight, ...).
NamedTensors state_dict(const torch::nn::Module& m);

struct LoadReport {
  std::vector<std::string> resized;          // bias tables interpolated to this model's grid
  std::vector<std::string> counters_zeroed;  // BatchNorm num_batches_tracked absent: set to 0
};

LoadReport load_state_dict(torch::nn::Module& m, const NamedTensors& tensors,
                           const std::string& source);
LoadReport load_weights(torch::nn::Module& m, const std::string& safetensors_path);
void save_weights(const torch::nn::Module& m, const std::string& safetensors_path);

}  // namespace coatnet::model
