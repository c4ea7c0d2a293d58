// src/cuda without nvcc: the kernels are absent, and asking for one says so.
#include <stdexcept>

#include "cuda/batch_prep.h"
#include "cuda/relpos_attention.h"

namespace coatnet::cuda {

bool kernels_built() {
  return false;
}

namespace {
[[noreturn]] void absent() {
  throw std::runtime_error(
      "train.cuda_kernels: this coatnet was built without its CUDA kernels (no nvcc at "
      "configure time; see `coatnet: CUDA kernels` in the configure output)");
}
}  // namespace

at::Tensor prepare_batch(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const data::MixInfo&, at::ScalarType) {
  absent();
}

at::Tensor relpos_attention(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, int64_t, int64_t) {
  absent();
}

std::vector<at::Tensor> relpos_attention_forward(const at::Tensor&, const at::Tensor&,
                                                 const at::Tensor&, const at::Tensor&, int64_t,
                                                 int64_t) {
  absent();
}

std::vector<at::Tensor> relpos_attention_backward(const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, int64_t, int64_t) {
  absent();
}

}  // namespace coatnet::cuda
