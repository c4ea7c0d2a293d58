// The CUDA executor of the fused relative-position attention (relpos_attention_launch.h): the
// blocks of relpos_attention_blocks.h as kernels of 4 warps over (B·heads, tiles), on the current
// stream. The tile products run on tensor cores (WMMA 16×16×16, float32 sums) for bfloat16 and
// float16; float32 inputs take the same loops as the emulation, on CUDA cores (exact, slow: a
// float32 model should keep the composite).
//
// Replaces an earlier float32 CUDA-core version (commit 20cb2d6: 0.26x its composite on an H100).
// This one has not run on a GPU yet: opt-in until it beats the composite there.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <mma.h>

#include <array>
#include <atomic>

#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_launch.h"

namespace coatnet::cuda {

namespace {

using namespace relpos;

template <typename T>
constexpr bool kTensorCores =
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;
#else
    std::is_same_v<T, __half>;
#endif

// C[16 × cols] (+)= A[16 × k] · op(B): one warp, WMMA tiles; A's fragments loaded once.
template <typename T, bool kTransposedB>
__device__ __forceinline__ void wmma_tiles(float* C, int ldc, const T* A, int lda, const T* B,
                                           int ldb, int cols, int k, bool accumulate) {
  using namespace nvcuda;
  using LayoutB = std::conditional_t<kTransposedB, wmma::col_major, wmma::row_major>;
  constexpr int kMaxSteps = 4;  // k ≤ 64: the head size or a chunk
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[kMaxSteps];
  const int steps = k / 16;
#pragma unroll
  for (int t = 0; t < kMaxSteps; ++t)
    if (t < steps) wmma::load_matrix_sync(a[t], A + t * 16, lda);
  for (int c = 0; c < cols; c += 16) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if (accumulate)
      wmma::load_matrix_sync(acc, C + c, ldc, wmma::mem_row_major);
    else
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int t = 0; t < kMaxSteps; ++t) {
      if (t >= steps) break;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LayoutB> b;
      wmma::load_matrix_sync(b, kTransposedB ? B + c * ldb + t * 16 : B + t * 16 * ldb + c, ldb);
      wmma::mma_sync(acc, a[t], b, acc);
    }
    wmma::store_matrix_sync(C + c, acc, ldc, wmma::mem_row_major);
  }
}

struct GpuOps {
  CN_HD static void sync() {
#ifdef __CUDA_ARCH__
    __syncthreads();
#endif
  }
  CN_HD static void syncwarp() {
#ifdef __CUDA_ARCH__
    __syncwarp();
#endif
  }
  template <bool kTransposedB, typename T>
  CN_HD static void mma(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int cols,
                        int k, bool accumulate) {
#ifdef __CUDA_ARCH__
    if constexpr (kTensorCores<T>)
      wmma_tiles<T, kTransposedB>(C, ldc, A, lda, B, ldb, cols, k, accumulate);
    else
      scalar_mma<kTransposedB>(threadIdx.x % kLanes, kLanes, C, ldc, A, lda, B, ldb, cols, k,
                               accumulate);
#endif
  }
};

__device__ __forceinline__ Team this_team() {
  return Team{static_cast<int>(threadIdx.x), kThreads};
}

// Each kernel's name starts with relpos_: the step profiler and Nsight Compute list kernels by
// their function names, and bn_gelu.cu has a forward kernel too.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) relpos_forward_kernel(Shape s, Args<T> a) {
  extern __shared__ __align__(32) char smem[];
  forward_block<GpuOps, T, D>(s, a, blockIdx.x, blockIdx.y, this_team(), smem);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) relpos_backward_dq_kernel(Shape s, Args<T> a) {
  extern __shared__ __align__(32) char smem[];
  backward_dq_block<GpuOps, T, D>(s, a, blockIdx.x, blockIdx.y, this_team(), smem);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) relpos_backward_dkv_kernel(Shape s, Args<T> a) {
  extern __shared__ __align__(32) char smem[];
  backward_dkv_block<GpuOps, T, D>(s, a, blockIdx.x, blockIdx.y, this_team(), smem);
}

__global__ void relpos_reduce_table_kernel(Shape s, const float* part, float* dtable) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e < s.table_rows() * s.heads) reduce_table(s, part, dtable, e / s.heads, e % s.heads);
}

// The most shared memory a block may have on `device`, asked once per device (applies() runs
// every forward).
int64_t smem_limit(int device) {
  static std::array<std::atomic<int>, 64> known{};  // 0: not asked yet
  auto& slot = known.at(static_cast<size_t>(device));
  if (slot.load() == 0) {
    int most = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    slot.store(most);
  }
  return slot.load();
}

template <typename Kernel, typename T>
void launch(Kernel kernel, const Shape& s, const Args<T>& a, int64_t bytes) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
  const dim3 grid(static_cast<unsigned>(s.batch * s.heads), static_cast<unsigned>(s.tiles()));
  kernel<<<grid, kThreads, bytes, at::cuda::getCurrentCUDAStream()>>>(s, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

struct CudaExec {
  using BFloat16 = __nv_bfloat16;
  using Half = __half;

  template <typename T, int D>
  static void forward(const Shape& s, const Args<T>& a, int64_t bytes) {
    launch(relpos_forward_kernel<T, D>, s, a, bytes);
  }
  template <typename T, int D>
  static void backward(const Shape& s, const Args<T>& a, int64_t dq_bytes, int64_t dkv_bytes) {
    launch(relpos_backward_dq_kernel<T, D>, s, a, dq_bytes);
    launch(relpos_backward_dkv_kernel<T, D>, s, a, dkv_bytes);
  }
  static void reduce_table(const Shape& s, const float* part, float* dtable) {
    const int outputs = s.table_rows() * s.heads;
    relpos_reduce_table_kernel<<<(outputs + 127) / 128, 128, 0, at::cuda::getCurrentCUDAStream()>>>(
        s, part, dtable);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

std::vector<at::Tensor> forward(const at::Tensor& qkv, const at::Tensor& table, int64_t heads) {
  const c10::cuda::CUDAGuard guard(qkv.device());
  return relpos::forward<CudaExec>(qkv, table, heads);
}

std::vector<at::Tensor> backward(const at::Tensor& dout, const at::Tensor& qkv,
                                 const at::Tensor& out, const at::Tensor& lse,
                                 const at::Tensor& table, int64_t heads) {
  const c10::cuda::CUDAGuard guard(qkv.device());
  return relpos::backward<CudaExec>(dout, qkv, out, lse, table, heads);
}

// CUDA tensors the kernels take, whose blocks fit this GPU's shared memory (the largest is
// backward_dq's, with its per-warp tables; 64 heads of 24x24 need about 140 KiB).
bool applies(const at::Tensor& qkv, int64_t heads) {
  if (!qkv.is_cuda() || head_size(qkv, heads) == 0) return false;
  const Shape s{static_cast<int>(qkv.size(0)),
                static_cast<int>(heads),
                static_cast<int>(qkv.size(2) * qkv.size(3)),
                static_cast<int>(qkv.size(2)),
                static_cast<int>(qkv.size(3)),
                1.f};
  int64_t most = 0;
  dispatch<CudaExec>(qkv, heads, [&](auto zero, auto dim) {
    using T = decltype(zero);
    constexpr int D = decltype(dim)::value;
    most = std::max({forward_layout<T, D>(s, nullptr).bytes,
                     backward_dq_layout<T, D>(s, nullptr).bytes,
                     backward_dkv_layout<T, D>(s, nullptr).bytes});
  });
  return most <= smem_limit(qkv.device().index());
}

}  // namespace

const model::RelPosAttentionKernels& relpos_attention_kernels() {
  static const model::RelPosAttentionKernels k{forward, backward, applies};
  return k;
}

}  // namespace coatnet::cuda
