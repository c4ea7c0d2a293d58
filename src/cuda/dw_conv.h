// The depthwise 3x3 stride-2 convolution's input gradient of model/dw_conv.h on the GPU
// (src/cuda): one pass; a thread owns a pack of channels along one input row and gathers each
// pixel's 1-4 taps of dy (dw_conv_blocks.h). Channels-last float32, bfloat16 and float16. Opt-in
// (train.cuda_kernels: [dw_conv_dgrad]) until measured faster than cuDNN's on a GPU.
#pragma once

#include "model/dw_conv.h"

namespace coatnet::cuda {

// The kernel; calling it in a build without nvcc throws, naming the configure line.
const model::DwConvKernels& dw_conv_kernels();
// The same thread body and launch geometry run serially on the CPU (channels-last CPU tensors),
// in every build: what the CPU tests check the kernel's indexing with.
const model::DwConvKernels& dw_conv_emulated();

}  // namespace coatnet::cuda
