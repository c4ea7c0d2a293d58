// The one-pass batch preparation kernel (batch_prep.h). One thread per output element, in the
// output's NHWC order, so that neighbouring threads read neighbouring bytes of a channels-last
// uint8 batch and write neighbouring outputs. Memory-bound: per element 1 byte read (2 with
// Mixup) and 2 or 4 written. The arithmetic is the composite's, rounding step by step
// (__fmul_rn/__fadd_rn: no contraction into an FMA), so float32 output matches it.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "cuda/batch_prep.h"

namespace coatnet::cuda {

namespace {

struct Shape {
  int64_t b, c, h, w;      // logical (B, C, H, W)
  int64_t sb, sc, sh, sw;  // the input's strides, in elements
  float lam, rest;         // Mixup: v·lam + partner·rest
  int mixed, cutmix;
  int64_t y0, y1, x0, x1;  // CutMix box
};

__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void store(__half* p, float v) {
  *p = __float2half_rn(v);
}

template <typename Out>
__global__ void prepare_batch_kernel(const uint8_t* __restrict__ in,
                                     const float* __restrict__ scale,
                                     const float* __restrict__ bias, Out* __restrict__ out,
                                     Shape s) {
  const int64_t n = s.b * s.c * s.h * s.w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = i % s.c;
    int64_t t = i / s.c;
    const int64_t x = t % s.w;
    t /= s.w;
    const int64_t y = t % s.h;
    const int64_t b = t / s.h;
    const float k = scale[ch], o = bias[ch];
    const int64_t at = ch * s.sc + y * s.sh + x * s.sw;
    float v = __fadd_rn(__fmul_rn(static_cast<float>(in[b * s.sb + at]), k), o);
    if (s.mixed) {
      // The pair partner, as data::partners_of: 2k <-> 2k+1, the last row of an odd batch itself.
      const int64_t p = (b ^ 1) < s.b ? (b ^ 1) : b;
      const float m = __fadd_rn(__fmul_rn(static_cast<float>(in[p * s.sb + at]), k), o);
      if (!s.cutmix)
        v = __fadd_rn(__fmul_rn(v, s.lam), __fmul_rn(m, s.rest));
      else if (y >= s.y0 && y < s.y1 && x >= s.x0 && x < s.x1)
        v = m;
    }
    store(out + i, v);
  }
}

}  // namespace

bool kernels_built() {
  return true;
}

at::Tensor prepare_batch(const at::Tensor& images, const at::Tensor& scale, const at::Tensor& bias,
                         const data::MixInfo& mix, at::ScalarType dtype) {
  TORCH_CHECK(images.is_cuda() && images.scalar_type() == at::kByte && images.dim() == 4,
              "prepare_batch: expected a 4-d uint8 CUDA tensor, got ", images.toString(), " ",
              images.sizes());
  const int64_t c = images.size(1);
  TORCH_CHECK(scale.numel() == c && bias.numel() == c && scale.scalar_type() == at::kFloat &&
                  bias.scalar_type() == at::kFloat,
              "prepare_batch: scale and bias need ", c, " float32 values");
  const c10::cuda::CUDAGuard guard(images.device());
  const at::Tensor k = scale.to(images.device()).contiguous();
  const at::Tensor o = bias.to(images.device()).contiguous();
  at::Tensor out = at::empty(
      images.sizes(), images.options().dtype(dtype).memory_format(at::MemoryFormat::ChannelsLast));
  Shape s{images.size(0),
          c,
          images.size(2),
          images.size(3),
          images.stride(0),
          images.stride(1),
          images.stride(2),
          images.stride(3),
          static_cast<float>(mix.lam),
          static_cast<float>(1.0 - mix.lam),
          mix.mixed ? 1 : 0,
          mix.cutmix ? 1 : 0,
          mix.y0,
          mix.y1,
          mix.x0,
          mix.x1};
  const int64_t n = out.numel();
  if (n == 0) return out;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 1 << 16));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const uint8_t* in = images.data_ptr<uint8_t>();
  switch (dtype) {
    case at::kFloat:
      prepare_batch_kernel<<<blocks, threads, 0, stream>>>(
          in, k.data_ptr<float>(), o.data_ptr<float>(), out.data_ptr<float>(), s);
      break;
    case at::kBFloat16:
      prepare_batch_kernel<<<blocks, threads, 0, stream>>>(
          in, k.data_ptr<float>(), o.data_ptr<float>(),
          reinterpret_cast<__nv_bfloat16*>(out.data_ptr<at::BFloat16>()), s);
      break;
    case at::kHalf:
      prepare_batch_kernel<<<blocks, threads, 0, stream>>>(
          in, k.data_ptr<float>(), o.data_ptr<float>(),
          reinterpret_cast<__half*>(out.data_ptr<at::Half>()), s);
      break;
    default:
      TORCH_CHECK(false, "prepare_batch: output dtype ", dtype,
                  " is not supported (float32, bfloat16, float16 are)");
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace coatnet::cuda
