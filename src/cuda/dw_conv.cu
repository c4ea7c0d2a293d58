// The CUDA executor of the depthwise stride-2 input gradient (dw_conv_launch.h): its thread body
// (dw_conv_blocks.h) as one kernel on the current stream. Not yet run on a GPU: opt-in until it
// beats cuDNN's input gradient there.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/dw_conv.h"
#include "cuda/dw_conv_launch.h"

namespace coatnet::cuda {

namespace {

using namespace dw_conv;

// The name starts with dw_conv_, as the step profiler and Nsight Compute list kernels by name.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    dw_conv_input_grad_kernel(Geometry g, const T* __restrict__ dy, const float* __restrict__ w9,
                              T* __restrict__ dx, Shape s) {
  const Lane l = lane_of(g, blockIdx.x, blockIdx.y, threadIdx.x, threadIdx.y);
  if (l.pack < s.packs) input_grad_lane<T, V>(dy, w9, dx, s, l);
}

struct CudaExec {
  using BFloat16 = __nv_bfloat16;
  using Half = __half;

  template <typename T, int V>
  static void input_grad_rows(const Geometry& g, const T* dy, const float* w9, T* dx,
                              const Shape& s) {
    const dim3 grid(static_cast<unsigned>(g.grid_x), static_cast<unsigned>(g.grid_y));
    const dim3 block(static_cast<unsigned>(g.block_x), static_cast<unsigned>(g.block_y));
    dw_conv_input_grad_kernel<T, V>
        <<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(g, dy, w9, dx, s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor input_grad(const at::Tensor& dy, const at::Tensor& weight, at::IntArrayRef input_sizes) {
  const c10::cuda::CUDAGuard guard(dy.device());
  return dw_conv::input_grad<CudaExec>(dy, weight, input_sizes);
}

bool applies(const at::Tensor& dy) {
  return dy.is_cuda() && takes(dy);
}

}  // namespace

const model::DwConvKernels& dw_conv_kernels() {
  static const model::DwConvKernels k{input_grad, applies};
  return k;
}

}  // namespace coatnet::cuda
