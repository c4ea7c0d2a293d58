// Training losses on soft targets (label smoothing and Mixup/CutMix already applied):
// softmax cross-entropy for single-label data, sigmoid BCE for multi-label (JFT-style) data.
// Rows masked out by `valid` (padding, corrupt records) take no part; the loss is the mean
// over the valid rows of this rank.
#pragma once

#include <ATen/core/Tensor.h>

namespace coatnet::train {

enum class LossType { SoftmaxCE, SigmoidBCE };

at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& soft_targets,
                               const at::Tensor& valid, LossType type);

}  // namespace coatnet::train
