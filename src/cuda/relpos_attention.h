// The fused relative-position attention of model/relpos_attention.h on the GPU (src/cuda):
// softmax(q·kᵀ/√D + table[offset]) · v read straight from the qkv convolution's channels-last
// output, forward (one kernel) and backward (dq and the table's gradient; dk and dv; the table's
// last sum), flash-attention tiling on tensor cores, the table gathered and its gradient summed
// inside the kernels. The blocks are in relpos_attention_blocks.h, the host side in
// relpos_attention_launch.h. Head size 32 or 64; bfloat16, float16 (tensor cores) and float32
// (CUDA cores). Opt-in (train.cuda_kernels: [relpos_attention]) until measured faster than the
// composite on a GPU.
#pragma once

#include "model/relpos_attention.h"

namespace coatnet::cuda {

// The kernels; calling them in a build without nvcc throws, naming the configure line.
const model::RelPosAttentionKernels& relpos_attention_kernels();
// The same blocks run serially on the CPU (CPU tensors), in every build: what the CPU tests
// check the kernels' algorithm with.
const model::RelPosAttentionKernels& relpos_attention_emulated();
// The same blocks with a CPU thread for each CUDA thread, run one at a time and switching at the
// barriers, in ascending or descending thread order (cuda/block_threads.h): what the CPU tests
// find a missing barrier with. Slow; for small problems.
const model::RelPosAttentionKernels& relpos_attention_threaded(bool descending);

}  // namespace coatnet::cuda
