// Registers a set of pluggable kernels (model::BnGeluKernels, model::RelPosAttentionKernels) for
// the scope's life, a training run's, then the composite again.
//   model::KernelsScope<BnGeluKernels, set_bn_gelu_kernels> scope(&cuda::bn_gelu_kernels());
#pragma once

namespace coatnet::model {

template <typename Kernels, void (*Set)(const Kernels*)>
class KernelsScope {
 public:
  explicit KernelsScope(const Kernels* kernels) { Set(kernels); }
  ~KernelsScope() { Set(nullptr); }
  KernelsScope(const KernelsScope&) = delete;
  KernelsScope& operator=(const KernelsScope&) = delete;
};

}  // namespace coatnet::model
