// The MBConv block's pre-norm BatchNorm, its 1x1 expansion and the BatchNorm after it (norm1),
// in training, as one matrix product of the block's input (train.bn_fold).
//
// Both BatchNorms are affine maps per channel once the batch's statistics are known, and the
// statistics of the expansion's output follow from the input's: with the input's mean μ and
// covariance Σ (C×C), the pre-norm is x ↦ a0⊙x + b0 (a0 = γ0/√(diag Σ + ε)), the expansion's
// output W·(a0⊙x + b0) has mean W·(a0⊙μ + b0) and variance diag(W' Σ W'ᵀ) (W' = W·diag a0), so
// norm1(expansion(pre_norm(x))) = (diag(a1)·W')·x + b1: one matrix product of x with folded
// weights and a bias (at::addmm, the bias in the product's epilogue). Σ is a small product of x
// with itself (float32 sums, per sample in a batch, then added). x is centred first (by its
// batch mean, rounded): folded weights carry bf16 rounding, which an uncentred input would
// multiply by |mean| / std.
//
// The composite passes over the expansion's output 5 times forward (conv write, statistics, the
// normalisation's read and write, then GELU's read) and 7 times backward (BatchNorm's reduction
// and element-wise pass, then the convolution's two gradients read it); folded it is written once
// and read by GELU forward, and read 3 times backward (the bias gradient's sum and the two
// gradients); the input (a quarter to a sixth of its size) is summed and centred instead of
// normalised, and its normalised copy is never made. In coatnet_0 the expansion's output is the
// widest tensor of the step (128×384×112×112 in S1's first block). The statistics are those of
// the exact product, not of its bf16-rounded output; the running statistics update as
// BatchNorm's (unbiased variance, `momentum`).
//
//   if (takes_bn_fold(*pre_norm, *conv1, *norm1, x))
//     y = at::gelu(bn_conv_bn(*pre_norm, *conv1, *norm1, x));
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include "model/setting_scope.h"

namespace coatnet::model {

// Which blocks fold (train.bn_fold). kWide: only those whose expansion is more than 4x as wide
// as their input, each stage's first block, where the input comes from the narrower stage
// before. On an H100 and an H200 the fold was 2.4-2.8x and 1.4-1.7x the composite at coatnet_0's
// two such shapes (64 -> 384 at 112x112, 96 -> 768 at 56x56) and 0.75-0.83x and 0.43-0.47x at its
// 4x ones (96 -> 384 at 56x56, 192 -> 768 at 28x28): the input's covariance and its gradient
// cost C_in^2 per pixel, while what the fold saves, passes over the expansion's output, grows
// with C_out.
enum class BnFold { kOff, kWide, kEvery };

// Process-wide, like set_pointwise_gemm; off by default (a GPU run's auto is kWide).
void set_bn_fold(BnFold mode);
BnFold bn_fold();
using BnFoldScope = SettingScope<BnFold, set_bn_fold>;  // BnFoldScope on(BnFold::kEvery)

// Whether bn_conv_bn applies: asked for (kEvery; kWide where the convolution's output has more
// than 4x x's channels), both BatchNorms training with affine parameters, running statistics and
// a momentum, no BatchNorm override (SyncBatchNorm), conv 1x1 of stride 1 in one group, and x
// (B, C, H, W) channels-last with more than one value per channel.
bool takes_bn_fold(const torch::nn::BatchNorm2dImpl& bn0, const torch::nn::Conv2dImpl& conv,
                   const torch::nn::BatchNorm2dImpl& bn1, const at::Tensor& x);

// bn1(conv(bn0(x))) in training (the batch's statistics; both running statistics updated), x
// channels-last; the output (B, out, H, W) channels-last, in autocast's dtype where autocast is
// on (as the convolution's would be), else x's.
at::Tensor bn_conv_bn(torch::nn::BatchNorm2dImpl& bn0, torch::nn::Conv2dImpl& conv,
                      torch::nn::BatchNorm2dImpl& bn1, const at::Tensor& x);

}  // namespace coatnet::model
