// The host side of the depthwise stride-2 input gradient, written once over an executor of its
// thread body (dw_conv_blocks.h): CudaExec launches it as a kernel (dw_conv.cu), EmulatedExec
// runs it serially on the CPU (dw_conv_emulated.cpp). An executor provides BFloat16, Half and
// input_grad_rows<T, V>(geometry, dy, w9, dx, shape).
#pragma once

#include <ATen/ATen.h>

#include "cuda/dw_conv_blocks.h"
#include "cuda/pack_dispatch.h"

namespace coatnet::cuda::dw_conv {

// Whether the executor takes dy: a 4-d channels-last activation of float32, bfloat16 or float16.
inline bool takes(const at::Tensor& dy) {
  const at::ScalarType t = dy.scalar_type();
  return dy.dim() == 4 && dy.is_contiguous(at::MemoryFormat::ChannelsLast) &&
         (t == at::kFloat || t == at::kBFloat16 || t == at::kHalf);
}

template <typename Exec>
at::Tensor input_grad(const at::Tensor& dy_in, const at::Tensor& weight,
                      at::IntArrayRef input_sizes) {
  TORCH_CHECK(input_sizes.size() == 4 && weight.dim() == 4 && weight.size(0) == input_sizes[1] &&
                  weight.size(1) == 1 && weight.size(2) == 3 && weight.size(3) == 3,
              "dw_conv_dgrad: a depthwise 3x3 weight (C, 1, 3, 3) and an input (N, C, H, W) are "
              "needed, got ",
              weight.sizes(), " and ", input_sizes);
  const int64_t c = input_sizes[1], h = input_sizes[2], w = input_sizes[3];
  const int64_t oh = (h - 1) / 2 + 1, ow = (w - 1) / 2 + 1;  // stride 2, padding 1
  TORCH_CHECK(dy_in.dim() == 4 && dy_in.size(0) == input_sizes[0] && dy_in.size(1) == c &&
                  dy_in.size(2) == oh && dy_in.size(3) == ow,
              "dw_conv_dgrad: dy of ", input_sizes[0], "x", c, "x", oh, "x", ow,
              " expected for an input of ", input_sizes, ", got ", dy_in.sizes());
  const at::Tensor dy = dy_in.contiguous(at::MemoryFormat::ChannelsLast);
  // Tap-major float32 weights: a lane reads its V channels of a tap as one run.
  const at::Tensor w9 = weight.reshape({c, 9}).t().to(at::kFloat).contiguous();
  at::Tensor dx =
      at::empty(input_sizes, dy.options().memory_format(at::MemoryFormat::ChannelsLast));
  dispatch<Exec>(dy, "dw_conv_dgrad", {dy.data_ptr(), dx.data_ptr()}, [&](auto zero, auto vec) {
    using T = decltype(zero);
    constexpr int V = decltype(vec)::value;
    const Shape s{input_sizes[0], h, w, oh, ow, c / V};
    Exec::template input_grad_rows<T, V>(geometry(s.n * h, s.packs), ptr<T>(dy), ptr<float>(w9),
                                         ptr<T>(dx), s);
  });
  return dx;
}

}  // namespace coatnet::cuda::dw_conv
