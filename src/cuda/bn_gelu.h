// The fused BatchNorm + GELU of model/bn_gelu.h on the GPU (src/cuda). Forward: ATen's batch
// statistics kernel, one per-channel kernel (the affine coefficients and the running
// statistics), and one element-wise pass x -> y. Backward: one per-channel kernel, one reduction
// pass over dy and x (the per-channel sums of dz and dz·(x - mean), with dz = dy·gelu'(z)
// recomputed, split over row blocks and summed in a fixed order: deterministic), one per-channel
// kernel, and one element-wise pass dy, x -> dx. The passes are in bn_gelu_blocks.h, the host
// side in bn_gelu_launch.h. Channels-last float32, bfloat16 and float16 activations with
// float32 parameters; anything else goes to the composite. Opt-in (train.cuda_kernels:
// [bn_gelu]) until measured faster on a GPU.
#pragma once

#include "model/bn_gelu.h"

namespace coatnet::cuda {

// The kernels; calling them in a build without nvcc throws, naming the configure line.
const model::BnGeluKernels& bn_gelu_kernels();
// The same thread bodies and launch geometry run serially on the CPU (channels-last CPU
// tensors), in every build: what the CPU tests check the kernels' algorithm with.
const model::BnGeluKernels& bn_gelu_emulated();

}  // namespace coatnet::cuda
