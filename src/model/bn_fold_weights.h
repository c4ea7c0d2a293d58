// The arithmetic of train.bn_fold on C-sized float32 tensors (model/bn_fold.h): from the centred
// input's second moments and mean, and the two BatchNorms' and the expansion's parameters, the
// folded weights and bias of the one matrix product, as a single autograd node whose gradient
// is written out. As some 40 ATen operations, each with autograd's node, it cost the host more
// than the GPU work it saves at coatnet_0's narrower blocks (bench_host, docs/GPU.md).
//
// With Σ = second − mean·meanᵀ, a0 = γ0/√(diag Σ + ε0) and W1 = W·diag(a0), norm1's variance is
// var1 = diag(W1 Σ W1ᵀ), a1 = γ1/√(var1 + ε1), and on the centred input u:
//   norm1(expansion(pre_norm(u))) = (diag(a1) W1)·u + β1 − a1⊙(W1·mean).
// The pre-norm's bias β0 and the convolution's bias cancel (BatchNorm removes any shift): their
// gradients are 0, as BatchNorm's are, and are returned as zeros so that every parameter's
// gradient is made during backward (the bucketed all-reduce starts a bucket when all of its
// parameters have one).
#pragma once

#include <ATen/core/Tensor.h>

namespace coatnet::model {

struct FoldedWeights {
  at::Tensor weight;  // (out, C) in `dtype`: diag(a1)·W1
  at::Tensor bias;    // (out) in `dtype`: β1 − a1⊙(W1·mean)
  at::Tensor var0;    // (C) the input's biased variance (no gradient), for the running statistics
  at::Tensor var1;    // (out) norm1's biased variance (no gradient)
};

struct FoldParameters {
  at::Tensor weight;                        // the expansion's (out, C), float32
  at::Tensor conv_bias;                     // (out) or undefined
  at::Tensor gamma0, beta0, gamma1, beta1;  // float32
  double eps0 = 1e-5, eps1 = 1e-5;
};

// second (C, C) and mean (C): float32 moments of the centred input (differentiable).
FoldedWeights fold_weights(const at::Tensor& second, const at::Tensor& mean,
                           const FoldParameters& p, at::ScalarType dtype);

}  // namespace coatnet::model
