// What the tests of src/cuda's kernels share: the comparison they bound, and why a GPU test
// skips.
#pragma once

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <string>

#include "cuda/batch_prep.h"

namespace coatnet::test {

// max |a − b| over max |b|, in float64.
inline double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}

// Empty when the kernels can run here, else the reason a GPU test skips.
inline std::string gpu_unavailable() {
  if (!cuda::kernels_built()) return "built without the CUDA kernels (no nvcc)";
  if (!torch::cuda::is_available()) return "no GPU visible: the kernels need one";
  return "";
}

}  // namespace coatnet::test
