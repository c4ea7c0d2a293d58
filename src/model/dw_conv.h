// The depthwise 3x3 convolution of stride 2 (an MBConv block's downsampling conv2_kxk) with its
// input gradient from pluggable kernels. On an H100 (torch 2.11, cuDNN of CUDA 13) cuDNN's input
// gradient of it took 2.16 ms at coatnet_0's S1 (128×384×112×112 from 56×56) and 1.08 ms at S2,
// where moving its bytes (write dx, read dy) takes about 0.47 and 0.24 ms; its stride-1 blocks
// ran near that bound. The forward and the weight's gradient stay cuDNN's.
//
// The kernels: `dw_conv_reference()` (ATen's convolution_backward, any device; what the CPU
// tests compare with) and the CUDA kernel of src/cuda (cuda::dw_conv_kernels(), opt-in with
// train.cuda_kernels: [dw_conv_dgrad]).
//
//   model::DwConvKernelsScope k(&cuda::dw_conv_kernels());
//   y = model::conv(conv2_kxk, x);  // takes dw_conv_s2 where it applies
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>

#include "model/setting_scope.h"

namespace coatnet::model {

struct DwConvKernels {
  // dx (input_sizes, channels-last, dy's dtype): the input gradient of a depthwise 3x3
  // convolution of stride 2 and padding 1 with weight (C, 1, 3, 3), from dy (N, C, OH, OW),
  // channels-last.
  at::Tensor (*input_grad)(const at::Tensor& dy, const at::Tensor& weight,
                           at::IntArrayRef input_sizes);
  // Whether these kernels take this dy (device, dtype, memory format).
  bool (*applies)(const at::Tensor& dy);
};

const DwConvKernels& dw_conv_reference();

// Process-wide, like set_bn_gelu_kernels; nullptr (the default): the convolution's own backward.
void set_dw_conv_kernels(const DwConvKernels* kernels);
const DwConvKernels* dw_conv_kernels();
using DwConvKernelsScope = SettingScope<const DwConvKernels*, set_dw_conv_kernels>;

// Whether dw_conv_s2 applies: kernels registered that take x, gradients wanted, c depthwise
// (groups = in = out channels) 3x3 of stride 2, padding 1, dilation 1, no bias, and x 4-d
// channels-last.
bool takes_dw_conv_s2(const torch::nn::Conv2dImpl& c, const at::Tensor& x);

// c(x), in autocast's dtype where autocast is on (as the convolution's would be), with the
// input gradient from `kernels`.
at::Tensor dw_conv_s2(const DwConvKernels& kernels, torch::nn::Conv2dImpl& c, const at::Tensor& x);

}  // namespace coatnet::model
