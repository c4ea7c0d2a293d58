// src/cuda without nvcc: the kernels are absent, and asking for one says so.
#include <stdexcept>

#include "cuda/batch_prep.h"

namespace coatnet::cuda {

bool kernels_built() {
  return false;
}

at::Tensor prepare_batch(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const data::MixInfo&, at::ScalarType) {
  throw std::runtime_error(
      "train.cuda_kernels: this coatnet was built without its CUDA kernels (no nvcc at "
      "configure time; see `coatnet: CUDA kernels` in the configure output)");
}

}  // namespace coatnet::cuda
