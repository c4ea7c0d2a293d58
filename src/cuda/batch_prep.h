// GPU batch preparation in one pass (src/cuda): a uint8 batch already on the GPU → normalised
// with the loader's per-channel v·scale + bias (its two rounded float steps) → Mixup or CutMix
// with each row's pair partner → the model's dtype, channels-last. One read of the bytes and one
// write of the result, where the ATen composite (data::prepare_batch_composite: to(float),
// mul_, add_, flip, mul_, add_, to(dtype), contiguous) makes about ten passes over float32.
// Opt-in (train.cuda_kernels: [batch_prep]) until measured faster on a GPU.
//
//   at::Tensor x = cuda::prepare_batch(u8_on_gpu, scale, bias, data::draw_mix(...), at::kBFloat16);
#pragma once

#include <ATen/core/Tensor.h>

#include "data/mixup.h"

namespace coatnet::cuda {

// Whether this build has the CUDA kernels of src/cuda (nvcc at configure time).
bool kernels_built();

// images: (B, C, H, W) uint8 on a CUDA device, any strides; scale, bias: (C) float32 on the
// same device. Returns (B, C, H, W) of `dtype` (float32, bfloat16 or float16), channels-last.
at::Tensor prepare_batch(const at::Tensor& images, const at::Tensor& scale, const at::Tensor& bias,
                         const data::MixInfo& mix, at::ScalarType dtype);

}  // namespace coatnet::cuda
