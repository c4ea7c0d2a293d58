// What the thread bodies of src/cuda share between their two executors, the CUDA kernels and the
// serial CPU emulations the tests run without a GPU: the host/device function marker, packs of
// neighbouring elements, and float conversions of the element types (float, bfloat16, half),
// rounding to nearest either way.
#pragma once

#include <math.h>  // erff, expf, fmaf for host and device alike

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define CN_HD __host__ __device__ __forceinline__
#define CN_UNROLL _Pragma("unroll")
#else
#define CN_HD inline
#define CN_UNROLL
#endif

namespace coatnet::cuda {

// V neighbouring elements, loaded and stored as one (16-byte) access.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// float, c10::BFloat16 and c10::Half (the emulations) convert themselves.
template <typename T>
CN_HD float to_float(T v) {
  return static_cast<float>(v);
}
template <typename T>
CN_HD void from_float(float v, T* out) {
  *out = static_cast<T>(v);
}
#if defined(__CUDACC__)
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ void from_float(float v, __nv_bfloat16* out) {
  *out = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void from_float(float v, __half* out) {
  *out = __float2half_rn(v);
}
#endif

}  // namespace coatnet::cuda
