// Sets a process-wide model setting for the scope's life, a training run's, then its default
// (T{}: no kernels, off) again: the pluggable kernels (model::BnGeluKernels),
// train.pointwise_gemm, train.se_fold and train.bn_fold.
//   model::SettingScope<const BnGeluKernels*, set_bn_gelu_kernels> s(&cuda::bn_gelu_kernels());
#pragma once

namespace coatnet::model {

template <typename T, void (*Set)(T)>
class SettingScope {
 public:
  explicit SettingScope(T value) { Set(value); }
  ~SettingScope() { Set(T{}); }
  SettingScope(const SettingScope&) = delete;
  SettingScope& operator=(const SettingScope&) = delete;
};

}  // namespace coatnet::model
