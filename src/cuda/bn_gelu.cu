// The CUDA executor of the fused BatchNorm + GELU (bn_gelu_launch.h): each pass of
// bn_gelu_blocks.h as a kernel, on the current stream; the batch statistics from ATen's
// batch_norm_stats (its channels-last kernel).
//
// Measured on an H100 (gpu-check, bf16, batch 128): the first version (a flat grid-stride loop
// per 16-byte pack, 5 coefficients reloaded per element, a 64-bit modulo per pack) ran at 0.87x
// (S1) and 0.94x (S2) of ATen's composite, its element-wise backward as slow as ATen's
// GELU-backward and BatchNorm-backward kernels together. This version (lanes that own their
// channels, kUnroll rows in flight) has not run on a GPU yet: opt-in until it beats the composite.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/bn_gelu.h"
#include "cuda/bn_gelu_launch.h"

namespace coatnet::cuda {

namespace {

using namespace bn_gelu;

// Each kernel's name starts with bn_gelu_: the step profiler and Nsight Compute list kernels by
// their function names, and other kernels have forward kernels too.

__device__ __forceinline__ Lane this_lane(const Geometry& g, int64_t rows) {
  return lane_of(g, rows, blockIdx.x, blockIdx.y, threadIdx.x, threadIdx.y);
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    bn_gelu_forward_kernel(Geometry g, int64_t rows, const T* __restrict__ x,
                           const float* __restrict__ ab, T* __restrict__ y, int64_t packs) {
  const Lane l = this_lane(g, rows);
  if (l.pack < packs) forward_lane<T, V>(x, ab, y, packs, l);
}

// The lanes' sums added over threadIdx.y in shared memory, in order, into
// partial[blockIdx.y][0 or 1][channel]: deterministic, no atomics.
template <typename T, int V, bool S>
__global__ void __launch_bounds__(kThreads)
    bn_gelu_reduce_kernel(Geometry g, int64_t rows, const T* __restrict__ dy,
                          const T* __restrict__ x, const float* __restrict__ ab,
                          const float* __restrict__ mean, const float* __restrict__ dsample,
                          int64_t hw, float* __restrict__ partial, int64_t packs) {
  __shared__ float sums[2][kThreads * V];
  const Lane l = this_lane(g, rows);
  float s1[V], s2[V];
  for (int k = 0; k < V; ++k) s1[k] = s2[k] = 0.0f;
  if (l.pack < packs) reduce_lane<T, V, S>(dy, x, ab, mean, dsample, hw, packs, l, s1, s2);
  const int slot = (threadIdx.y * blockDim.x + threadIdx.x) * V;
  for (int k = 0; k < V; ++k) {
    sums[0][slot + k] = s1[k];
    sums[1][slot + k] = s2[k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || l.pack >= packs) return;
  const int64_t channels = packs * V;
  for (int k = 0; k < V; ++k) {
    float t1 = 0.0f, t2 = 0.0f;
    for (unsigned y = 0; y < blockDim.y; ++y) {
      t1 += sums[0][(y * blockDim.x + threadIdx.x) * V + k];
      t2 += sums[1][(y * blockDim.x + threadIdx.x) * V + k];
    }
    partial[2 * blockIdx.y * channels + l.pack * V + k] = t1;
    partial[(2 * blockIdx.y + 1) * channels + l.pack * V + k] = t2;
  }
}

template <typename T, int V, bool S>
__global__ void __launch_bounds__(kThreads)
    bn_gelu_elemt_kernel(Geometry g, int64_t rows, const T* __restrict__ dy,
                         const T* __restrict__ x, const float* __restrict__ ab,
                         const float* __restrict__ pq, const float* __restrict__ mean,
                         const float* __restrict__ dsample, int64_t hw, T* __restrict__ dx,
                         int64_t packs) {
  const Lane l = this_lane(g, rows);
  if (l.pack < packs) elemt_lane<T, V, S>(dy, x, ab, pq, mean, dsample, hw, dx, packs, l);
}

__global__ void bn_gelu_forward_channels_kernel(int64_t channels, const float* mean,
                                                const float* invstd, const float* weight,
                                                const float* bias, float* ab, float* running_mean,
                                                float* running_var, float momentum, float eps,
                                                float unbias) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c < channels)
    forward_channel(c, mean, invstd, weight, bias, ab, running_mean, running_var, channels,
                    momentum, eps, unbias);
}

__global__ void bn_gelu_affine_channels_kernel(int64_t channels, const float* mean,
                                               const float* invstd, const float* weight,
                                               const float* bias, float* ab) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c < channels) affine_channel(c, mean, invstd, weight, bias, ab, channels);
}

__global__ void bn_gelu_backward_channels_kernel(int64_t channels, const float* partial,
                                                 int64_t blocks, const float* ab,
                                                 const float* invstd, float* pq, float* dweight,
                                                 float* dbias, float inv_rows) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c < channels)
    backward_channel(c, partial, blocks, ab, invstd, pq, dweight, dbias, channels, inv_rows);
}

struct CudaExec {
  using BFloat16 = __nv_bfloat16;
  using Half = __half;

  static int sms() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }
  static cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }
  static dim3 grid(const Geometry& g) {
    return dim3(static_cast<unsigned>(g.grid_x), static_cast<unsigned>(g.grid_y));
  }
  static dim3 block(const Geometry& g) {
    return dim3(static_cast<unsigned>(g.block_x), static_cast<unsigned>(g.block_y));
  }
  static unsigned channel_blocks(int64_t channels) {
    return static_cast<unsigned>((channels + 127) / 128);
  }

  static std::tuple<at::Tensor, at::Tensor> stats(const at::Tensor& x, double eps) {
    return at::batch_norm_stats(x, eps);
  }
  template <typename... A>
  static void forward_channels(int64_t channels, A... args) {
    bn_gelu_forward_channels_kernel<<<channel_blocks(channels), 128, 0, stream()>>>(channels,
                                                                                    args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename... A>
  static void affine_channels(int64_t channels, A... args) {
    bn_gelu_affine_channels_kernel<<<channel_blocks(channels), 128, 0, stream()>>>(channels,
                                                                                   args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename... A>
  static void backward_channels(int64_t channels, A... args) {
    bn_gelu_backward_channels_kernel<<<channel_blocks(channels), 128, 0, stream()>>>(channels,
                                                                                     args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename T, int V, typename... A>
  static void forward_rows(const Geometry& g, int64_t rows, A... args) {
    bn_gelu_forward_kernel<T, V><<<grid(g), block(g), 0, stream()>>>(g, rows, args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename T, int V, bool S, typename... A>
  static void reduce_rows(const Geometry& g, int64_t rows, A... args) {
    bn_gelu_reduce_kernel<T, V, S><<<grid(g), block(g), 0, stream()>>>(g, rows, args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename T, int V, bool S, typename... A>
  static void elemt_rows(const Geometry& g, int64_t rows, A... args) {
    bn_gelu_elemt_kernel<T, V, S><<<grid(g), block(g), 0, stream()>>>(g, rows, args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& running_mean,
    at::Tensor& running_var, double momentum, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  return bn_gelu::forward<CudaExec>(x, weight, bias, running_mean, running_var, momentum, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& dsample) {
  const c10::cuda::CUDAGuard guard(x.device());
  return bn_gelu::backward<CudaExec>(dy, x, weight, bias, mean, invstd, dsample);
}

bool applies(const at::Tensor& x) {
  return x.is_cuda() && takes(x);
}

}  // namespace

const model::BnGeluKernels& bn_gelu_kernels() {
  static const model::BnGeluKernels k{forward, backward, applies};
  return k;
}

}  // namespace coatnet::cuda
