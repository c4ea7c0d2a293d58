// Fused BatchNorm + GELU (bn_gelu.h). The activations are channels-last, so memory holds
// `rows` = N·H·W rows of C channels; every kernel reads V neighbouring channels of a row at once
// (16 bytes when C allows, else V = 1). Per-channel coefficients are float32:
//   forward   z = x·a + b,  a = weight·invstd,  b = bias - mean·a;  y = gelu(z)
//   backward  dz = dy·gelu'(z);  S1 = Σ dz,  S2 = Σ dz·(x - mean)  (over the rows)
//             dx = a·dz + (x - mean)·p + q,  p = -a·invstd²·S2/rows,  q = -a·S1/rows
//             dweight = invstd·S2,  dbias = S1
// GELU is the exact (erf) form, as at::gelu's default.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/bn_gelu.h"

namespace coatnet::cuda {

namespace {

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ void from_float(float v, float* out) {
  *out = v;
}
__device__ __forceinline__ void from_float(float v, __nv_bfloat16* out) {
  *out = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void from_float(float v, __half* out) {
  *out = __float2half_rn(v);
}

// V neighbouring elements, loaded and stored as one (16-byte) access.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

__device__ __forceinline__ float gelu(float z) {
  return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
}
// d gelu / dz = Φ(z) + z·φ(z).
__device__ __forceinline__ float gelu_grad(float z) {
  return 0.5f * (1.0f + erff(z * 0.70710678118654752f)) +
         z * 0.39894228040143268f * expf(-0.5f * z * z);
}

template <typename T, int V>
__global__ void forward_kernel(const T* __restrict__ x, const float* __restrict__ a,
                               const float* __restrict__ b, T* __restrict__ y, int64_t packs,
                               int channels) {
  using P = Pack<T, V>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += step) {
    const int c0 = static_cast<int>((i * V) % channels);
    const P in = reinterpret_cast<const P*>(x)[i];
    P out;
#pragma unroll
    for (int k = 0; k < V; ++k)
      from_float(gelu(fmaf(to_float(in.v[k]), a[c0 + k], b[c0 + k])), &out.v[k]);
    reinterpret_cast<P*>(y)[i] = out;
  }
}

// One thread per channel: the affine coefficients and BatchNorm's running statistics (the
// variance recovered from invstd, as ATen's SyncBatchNorm does on the GPU).
__global__ void forward_coefficients(const float* __restrict__ mean,
                                     const float* __restrict__ invstd,
                                     const float* __restrict__ weight,
                                     const float* __restrict__ bias, float* __restrict__ a,
                                     float* __restrict__ b, float* __restrict__ running_mean,
                                     float* __restrict__ running_var, int channels, float momentum,
                                     float eps, float unbias) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  const float s = invstd[c], ac = weight[c] * s;
  a[c] = ac;
  b[c] = bias[c] - mean[c] * ac;
  const float var = 1.0f / (s * s) - eps;
  running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
  running_var[c] = (1.0f - momentum) * running_var[c] + momentum * var * unbias;
}

constexpr int kLanes = 32;  // threads across channels (each V channels)
constexpr int kRows = 8;    // threads across rows

// Block (kLanes, kRows) sums S1 and S2 of kLanes·V channels over one split of the rows into
// partial[split][0 or 1][channel]; backward_coefficients adds the splits in order.
template <typename T, int V>
__global__ void backward_reduce_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                       const float* __restrict__ weight,
                                       const float* __restrict__ bias,
                                       const float* __restrict__ mean,
                                       const float* __restrict__ invstd,
                                       float* __restrict__ partial, int64_t rows, int channels,
                                       int64_t rows_per_split) {
  using P = Pack<T, V>;
  __shared__ float sums[2][kRows][kLanes * V];
  const int c0 = (blockIdx.x * kLanes + threadIdx.x) * V;
  float s1[V], s2[V];
#pragma unroll
  for (int k = 0; k < V; ++k) s1[k] = s2[k] = 0.0f;
  if (c0 < channels) {
    float a[V], b[V], m[V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      m[k] = mean[c0 + k];
      a[k] = weight[c0 + k] * invstd[c0 + k];
      b[k] = bias[c0 + k] - m[k] * a[k];
    }
    const int64_t r0 = blockIdx.y * rows_per_split;
    const int64_t r1 = min(rows, r0 + rows_per_split);
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRows) {
      const int64_t at = (r * channels + c0) / V;
      const P g = reinterpret_cast<const P*>(dy)[at];
      const P in = reinterpret_cast<const P*>(x)[at];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float xv = to_float(in.v[k]);
        const float dz = to_float(g.v[k]) * gelu_grad(fmaf(xv, a[k], b[k]));
        s1[k] += dz;
        s2[k] += dz * (xv - m[k]);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sums[0][threadIdx.y][threadIdx.x * V + k] = s1[k];
    sums[1][threadIdx.y][threadIdx.x * V + k] = s2[k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || c0 >= channels) return;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    float t1 = 0.0f, t2 = 0.0f;
    for (int y = 0; y < kRows; ++y) {
      t1 += sums[0][y][threadIdx.x * V + k];
      t2 += sums[1][y][threadIdx.x * V + k];
    }
    partial[(2 * static_cast<int64_t>(blockIdx.y)) * channels + c0 + k] = t1;
    partial[(2 * static_cast<int64_t>(blockIdx.y) + 1) * channels + c0 + k] = t2;
  }
}

// One thread per channel: the splits' sums in order, the parameters' gradients, and the
// coefficients (a, b, p, q) of the element-wise pass.
__global__ void backward_coefficients(const float* __restrict__ partial, int64_t splits,
                                      const float* __restrict__ weight,
                                      const float* __restrict__ bias,
                                      const float* __restrict__ mean,
                                      const float* __restrict__ invstd, float* __restrict__ coef,
                                      float* __restrict__ dweight, float* __restrict__ dbias,
                                      int channels, float inv_rows) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  float s1 = 0.0f, s2 = 0.0f;
  for (int64_t s = 0; s < splits; ++s) {
    s1 += partial[2 * s * channels + c];
    s2 += partial[(2 * s + 1) * channels + c];
  }
  const float is = invstd[c], a = weight[c] * is;
  dweight[c] = s2 * is;
  dbias[c] = s1;
  coef[c] = a;
  coef[channels + c] = bias[c] - mean[c] * a;
  coef[2 * channels + c] = -a * is * is * s2 * inv_rows;
  coef[3 * channels + c] = -a * s1 * inv_rows;
}

template <typename T, int V>
__global__ void backward_elemt_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                      const float* __restrict__ coef,
                                      const float* __restrict__ mean, T* __restrict__ dx,
                                      int64_t packs, int channels) {
  using P = Pack<T, V>;
  const float *a = coef, *b = coef + channels, *p = coef + 2 * channels, *q = coef + 3 * channels;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += step) {
    const int c0 = static_cast<int>((i * V) % channels);
    const P g = reinterpret_cast<const P*>(dy)[i];
    const P in = reinterpret_cast<const P*>(x)[i];
    P out;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const int c = c0 + k;
      const float xv = to_float(in.v[k]);
      const float dz = to_float(g.v[k]) * gelu_grad(fmaf(xv, a[c], b[c]));
      from_float(fmaf(a[c], dz, fmaf(xv - mean[c], p[c], q[c])), &out.v[k]);
    }
    reinterpret_cast<P*>(dx)[i] = out;
  }
}

// Calls f(T{}, std::integral_constant<int, V>{}) for x's element type and the widest V that
// divides the channels and keeps every pointer 16-byte aligned.
template <typename F>
void dispatch(const at::Tensor& x, std::initializer_list<const void*> pointers, F&& f) {
  const int64_t c = x.size(1);
  bool aligned = true;
  for (const void* p : pointers) aligned = aligned && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  auto with = [&](auto zero) {
    using T = decltype(zero);
    constexpr int kWide = 16 / sizeof(T);
    if (aligned && c % kWide == 0)
      f(zero, std::integral_constant<int, kWide>{});
    else
      f(zero, std::integral_constant<int, 1>{});
  };
  switch (x.scalar_type()) {
    case at::kFloat:
      return with(float{});
    case at::kBFloat16:
      return with(__nv_bfloat16{});
    case at::kHalf:
      return with(__half{});
    default:
      TORCH_CHECK(false, "bn_gelu: activations of dtype ", x.scalar_type(),
                  " are not supported (float32, bfloat16, float16 are)");
  }
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

int elementwise_blocks(int64_t packs, int threads) {
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>((packs + threads - 1) / threads, static_cast<int64_t>(sms) * 16)));
}

void check_parameters(const at::Tensor& x, std::initializer_list<at::Tensor> per_channel) {
  for (const at::Tensor& t : per_channel)
    TORCH_CHECK(
        t.is_cuda() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == x.size(1),
        "bn_gelu: BatchNorm's parameters and statistics must be ", x.size(1),
        " contiguous float32 values on the GPU (train.cuda_kernels: bn_gelu), got ", t.toString(),
        " ", t.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& running_mean,
    at::Tensor& running_var, double momentum, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_parameters(x, {weight, bias, running_mean, running_var});
  auto [mean, invstd] = at::batch_norm_stats(x, eps);
  const int channels = static_cast<int>(x.size(1));
  const int64_t rows = x.numel() / channels;
  at::Tensor ab = at::empty({2, channels}, weight.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  forward_coefficients<<<(channels + 127) / 128, 128, 0, stream>>>(
      ptr<float>(mean), ptr<float>(invstd), ptr<float>(weight), ptr<float>(bias), ptr<float>(ab),
      ptr<float>(ab) + channels, ptr<float>(running_mean), ptr<float>(running_var), channels,
      static_cast<float>(momentum), static_cast<float>(eps),
      static_cast<float>(static_cast<double>(rows) / static_cast<double>(rows - 1)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  dispatch(x, {x.data_ptr(), y.data_ptr()}, [&](auto zero, auto vec) {
    using T = decltype(zero);
    constexpr int V = decltype(vec)::value;
    const int64_t packs = x.numel() / V;
    forward_kernel<T, V><<<elementwise_blocks(packs, 256), 256, 0, stream>>>(
        ptr<T>(x), ptr<float>(ab), ptr<float>(ab) + channels, ptr<T>(y), packs, channels);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {y, mean, invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dy_in, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& invstd) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_parameters(x, {weight, bias, mean, invstd});
  const at::Tensor dy = dy_in.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  const int channels = static_cast<int>(x.size(1));
  const int64_t rows = x.numel() / channels;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  at::Tensor dweight = at::empty_like(weight), dbias = at::empty_like(bias);
  at::Tensor coef = at::empty({4, channels}, weight.options());
  dispatch(x, {x.data_ptr(), dy.data_ptr(), dx.data_ptr()}, [&](auto zero, auto vec) {
    using T = decltype(zero);
    constexpr int V = decltype(vec)::value;
    // Enough row splits for about 4 blocks per SM, each at least 64 rows.
    const int64_t lanes = (channels / V + kLanes - 1) / kLanes;
    int64_t splits = std::max<int64_t>(
        1,
        std::min<int64_t>((rows + 63) / 64, (4 * static_cast<int64_t>(sms) + lanes - 1) / lanes));
    const int64_t per_split = (rows + splits - 1) / splits;
    splits = (rows + per_split - 1) / per_split;
    at::Tensor partial = at::empty({splits, 2, channels}, weight.options());
    backward_reduce_kernel<T, V>
        <<<dim3(static_cast<unsigned>(lanes), static_cast<unsigned>(splits)), dim3(kLanes, kRows),
           0, stream>>>(ptr<T>(dy), ptr<T>(x), ptr<float>(weight), ptr<float>(bias),
                        ptr<float>(mean), ptr<float>(invstd), ptr<float>(partial), rows, channels,
                        per_split);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    backward_coefficients<<<(channels + 127) / 128, 128, 0, stream>>>(
        ptr<float>(partial), splits, ptr<float>(weight), ptr<float>(bias), ptr<float>(mean),
        ptr<float>(invstd), ptr<float>(coef), ptr<float>(dweight), ptr<float>(dbias), channels,
        static_cast<float>(1.0 / static_cast<double>(rows)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t packs = x.numel() / V;
    backward_elemt_kernel<T, V><<<elementwise_blocks(packs, 256), 256, 0, stream>>>(
        ptr<T>(dy), ptr<T>(x), ptr<float>(coef), ptr<float>(mean), ptr<T>(dx), packs, channels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dx, dweight, dbias};
}

bool applies(const at::Tensor& x) {
  const at::ScalarType t = x.scalar_type();
  return x.is_cuda() && x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
         (t == at::kFloat || t == at::kBFloat16 || t == at::kHalf) && x.size(1) <= (1 << 20);
}

}  // namespace

const model::BnGeluKernels& bn_gelu_kernels() {
  static const model::BnGeluKernels k{forward, backward, applies};
  return k;
}

}  // namespace coatnet::cuda
