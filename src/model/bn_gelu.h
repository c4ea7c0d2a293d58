// BatchNorm with the batch's statistics followed by GELU, as one autograd operation: the MBConv
// block's memory-bound chain (its norm1 and norm2, and the stem's norm1). The composite
// (batch_norm then gelu) passes over the activation 5 times forward (statistics, read x, write z,
// read z, write y) and 8 times backward (GELU's backward, then BatchNorm's reduction and
// element-wise pass over the materialised dz), and keeps both x and z for backward. Fused, the
// forward reads x twice and writes y; the backward recomputes z and dz from x and dy instead of
// storing them, reading dy and x twice and writing dx: 3 and 5 passes, and only x kept.
//
// The kernels behind it are pluggable: `bn_gelu_reference()` (ATen, float32, any device; what
// the CPU tests check the operation's algebra with) and the CUDA kernels of src/cuda
// (cuda::bn_gelu_kernels(), opt-in with train.cuda_kernels: [bn_gelu]).
//
//   model::set_bn_gelu_kernels(&cuda::bn_gelu_kernels());
//   y = model::batch_norm_act(norm1, x, Act::GELU);  // fused where it applies
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>

#include <tuple>
#include <utility>

#include "model/setting_scope.h"

namespace coatnet::model {

struct BnGeluKernels {
  // Training forward over x (N, C, H, W): the batch's per-channel mean and invstd (float32),
  // the running statistics updated in place (unbiased variance, `momentum`), and
  // y = gelu((x - mean) * invstd * weight + bias) in x's dtype and memory format.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> (*forward)(
      const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
      at::Tensor& running_mean, at::Tensor& running_var, double momentum, double eps);
  // (dx, dweight, dbias) from dy (x's shape and memory format), recomputing the
  // normalised input and GELU's derivative from x. dsample, when defined, is a per-sample term
  // of dy: (N, C) float32, added to dy at every pixel of sample n (the gradient that reached y
  // through its spatial mean, already divided by H·W; bn_gelu_mean).
  std::tuple<at::Tensor, at::Tensor, at::Tensor> (*backward)(
      const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
      const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& dsample);
  // Whether these kernels take this input (device, dtype, memory format).
  bool (*applies)(const at::Tensor& x);
};

// ATen in float32, any device, dtype and memory format: the reference the CUDA kernels are
// tested against, and what the CPU tests run the operation with.
const BnGeluKernels& bn_gelu_reference();

// Process-wide (one process trains one model), like set_batch_norm_override; nullptr (the
// default): batch_norm_act is BatchNorm then GELU.
void set_bn_gelu_kernels(const BnGeluKernels* kernels);
const BnGeluKernels* bn_gelu_kernels();

using BnGeluKernelsScope = SettingScope<const BnGeluKernels*, set_bn_gelu_kernels>;

// Whether the fused operation also takes the squeeze-excitation's spatial mean of its output
// (batch_norm_act_mean, train.cuda_kernels: bn_gelu_se_mean): process-wide, off by default.
void set_bn_gelu_se_mean(bool on);
bool bn_gelu_se_mean();
using BnGeluSeMeanScope = SettingScope<bool, set_bn_gelu_se_mean>;

// The fused operation in training mode, through `kernels`; the BatchNorm's parameters get
// gradients and its running statistics and num_batches_tracked move as BatchNorm's do.
at::Tensor bn_gelu(const BnGeluKernels& kernels, torch::nn::BatchNorm2dImpl& bn,
                   const at::Tensor& x);

// The same, returning y and its spatial mean (N, C, 1, 1; y.mean({2, 3}, keepdim)) from one
// autograd node. The mean's gradient then enters backward as the per-sample term of dy, which
// the kernels add as they read dy: an MBConv's squeeze-excitation no longer makes its (N, C, H, W)
// broadcast gradient and autograd no longer adds it to the projection's, two passes over the
// block's widest activation.
std::pair<at::Tensor, at::Tensor> bn_gelu_mean(const BnGeluKernels& kernels,
                                               torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x);

}  // namespace coatnet::model
