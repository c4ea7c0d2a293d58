// The host side of the fused BatchNorm + GELU, written once over an executor of its thread
// bodies (bn_gelu_blocks.h): CudaExec launches them as kernels (bn_gelu.cu), EmulatedExec runs
// them serially on the CPU (bn_gelu_emulated.cpp). An executor provides:
//   BFloat16, Half                 its 16-bit element types
//   sms()                          multiprocessors the launch geometry fills
//   stats(x, eps)                  the batch's (mean, invstd), float32 (C)
//   forward_channels, affine_channels, backward_channels   the per-channel passes
//   forward_rows<T, V>, reduce_rows<T, V, S>, elemt_rows<T, V, S>  the passes over the
//                                  activation (S: with the per-sample term of dy)
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <initializer_list>
#include <tuple>
#include <type_traits>

#include "cuda/bn_gelu_blocks.h"
#include "cuda/pack_dispatch.h"

namespace coatnet::cuda::bn_gelu {

inline void check_parameters(const at::Tensor& x, std::initializer_list<at::Tensor> per_channel) {
  for (const at::Tensor& t : per_channel)
    TORCH_CHECK(t.device() == x.device() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                    t.numel() == x.size(1),
                "bn_gelu: BatchNorm's parameters and statistics must be ", x.size(1),
                " contiguous float32 values on ", x.device(),
                " (train.cuda_kernels: bn_gelu), got ", t.toString(), " ", t.sizes());
}

// Whether the passes take x (on the executor's device): a 4-d channels-last activation of
// float32, bfloat16 or float16.
inline bool takes(const at::Tensor& x) {
  const at::ScalarType t = x.scalar_type();
  return x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
         (t == at::kFloat || t == at::kBFloat16 || t == at::kHalf);
}

template <typename Exec>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& running_mean,
    at::Tensor& running_var, double momentum, double eps) {
  check_parameters(x, {weight, bias, running_mean, running_var});
  auto [mean, invstd] = Exec::stats(x, eps);
  const int64_t channels = x.size(1), rows = x.numel() / channels;
  at::Tensor ab = at::empty({2, channels}, weight.options());
  Exec::forward_channels(channels, ptr<float>(mean), ptr<float>(invstd), ptr<float>(weight),
                         ptr<float>(bias), ptr<float>(ab), ptr<float>(running_mean),
                         ptr<float>(running_var), static_cast<float>(momentum),
                         static_cast<float>(eps),
                         static_cast<float>(static_cast<double>(rows) / (rows - 1)));
  at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  dispatch<Exec>(x, "bn_gelu", {x.data_ptr(), y.data_ptr()}, [&](auto zero, auto vec) {
    using T = decltype(zero);
    constexpr int V = decltype(vec)::value;
    const Geometry g = rows_geometry(rows, channels / V, Exec::sms(), 8);
    Exec::template forward_rows<T, V>(g, rows, ptr<T>(x), ptr<float>(ab), ptr<T>(y), channels / V);
  });
  return {y, mean, invstd};
}

// dsample, when defined: (N, C) float32 on x's device, added to dy at every pixel of sample n.
inline void check_sample_term(const at::Tensor& x, const at::Tensor& dsample) {
  if (!dsample.defined()) return;
  TORCH_CHECK(dsample.device() == x.device() && dsample.scalar_type() == at::kFloat &&
                  dsample.is_contiguous() && dsample.numel() == x.size(0) * x.size(1),
              "bn_gelu: the per-sample term of dy must be ", x.size(0), "x", x.size(1),
              " contiguous float32 values on ", x.device(), ", got ", dsample.toString(), " ",
              dsample.sizes());
}

template <typename Exec>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dy_in, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& dsample) {
  check_parameters(x, {weight, bias, mean, invstd});
  check_sample_term(x, dsample);
  const at::Tensor dy = dy_in.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t channels = x.size(1), rows = x.numel() / channels;
  const int64_t hw = x.size(2) * x.size(3);
  const float* sample_term = dsample.defined() ? ptr<float>(dsample) : nullptr;
  at::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  at::Tensor dweight = at::empty_like(weight), dbias = at::empty_like(bias);
  at::Tensor ab = at::empty({2, channels}, weight.options());  // the forward's a, b again
  at::Tensor pq = at::empty({2, channels}, weight.options());
  Exec::affine_channels(channels, ptr<float>(mean), ptr<float>(invstd), ptr<float>(weight),
                        ptr<float>(bias), ptr<float>(ab));
  auto passes = [&](auto zero, auto vec, auto with_sample_term) {
    using T = decltype(zero);
    constexpr int V = decltype(vec)::value;
    constexpr bool S = decltype(with_sample_term)::value;
    const int64_t packs = channels / V;
    const Geometry r = rows_geometry(rows, packs, Exec::sms(), 2);
    at::Tensor partial = at::empty({r.grid_y, 2, channels}, weight.options());
    Exec::template reduce_rows<T, V, S>(r, rows, ptr<T>(dy), ptr<T>(x), ptr<float>(ab),
                                        ptr<float>(mean), sample_term, hw, ptr<float>(partial),
                                        packs);
    Exec::backward_channels(channels, ptr<float>(partial), r.grid_y, ptr<float>(ab),
                            ptr<float>(invstd), ptr<float>(pq), ptr<float>(dweight),
                            ptr<float>(dbias), static_cast<float>(1.0 / rows));
    const Geometry g = rows_geometry(rows, packs, Exec::sms(), 8);
    Exec::template elemt_rows<T, V, S>(g, rows, ptr<T>(dy), ptr<T>(x), ptr<float>(ab),
                                       ptr<float>(pq), ptr<float>(mean), sample_term, hw,
                                       ptr<T>(dx), packs);
  };
  dispatch<Exec>(x, "bn_gelu", {x.data_ptr(), dy.data_ptr(), dx.data_ptr()},
                 [&](auto zero, auto vec) {
                   if (sample_term)
                     passes(zero, vec, std::true_type{});
                   else
                     passes(zero, vec, std::false_type{});
                 });
  return {dx, dweight, dbias};
}

}  // namespace coatnet::cuda::bn_gelu
