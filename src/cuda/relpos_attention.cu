// The CUDA executor of the fused relative-position attention: the blocks of
// relpos_attention_blocks.h with 256 threads, shared memory and atomics.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_blocks.h"

namespace coatnet::cuda {

namespace {

using relpos::kRows;
using relpos::kThreads;
using relpos::Shape;
using relpos::Tensors;

struct GpuOps {
  CN_HD static void sync() {
#ifdef __CUDA_ARCH__
    __syncthreads();
#endif
  }
  CN_HD static void add(float* p, float v) {
#ifdef __CUDA_ARCH__
    atomicAdd(p, v);
#else
    *p += v;
#endif
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(Shape s, Tensors<T> t) {
  extern __shared__ float smem[];
  relpos::forward_block<GpuOps>(s, t, blockIdx.y, blockIdx.x * kRows, threadIdx.x, blockDim.x,
                                smem);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) backward_q_kernel(Shape s, Tensors<T> t) {
  extern __shared__ float smem[];
  relpos::backward_q_block<GpuOps>(s, t, blockIdx.y, blockIdx.x * kRows, threadIdx.x, blockDim.x,
                                   smem);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) backward_kv_kernel(Shape s, Tensors<T> t) {
  extern __shared__ float smem[];
  relpos::backward_kv_block<GpuOps>(s, t, blockIdx.y, blockIdx.x * kRows, threadIdx.x, blockDim.x,
                                    smem);
}

// Lets KERNEL, launched over (query or key tiles, B·heads), use `bytes` of shared memory, or
// says why it cannot.
template <typename Kernel>
void allow_smem(Kernel kernel, int64_t bytes, const Shape& s, int64_t bh, const char* what) {
  int device = 0, most = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(bytes <= most, "relpos_attention: the ", what, " kernel needs ", bytes,
              " bytes of shared memory for N = ", s.n, ", head size ", s.d, "; this GPU has ", most,
              " (use the ATen composite: leave relpos_attention out of train.cuda_kernels)");
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
  TORCH_CHECK(bh <= 65535, "relpos_attention: batch x heads = ", bh, " exceeds 65535");
}

Shape shape_of(const at::Tensor& q, const at::Tensor& table, int64_t gh, int64_t gw) {
  TORCH_CHECK(q.dim() == 4, "relpos_attention: q must be (B, heads, N, D), got ", q.sizes());
  Shape s{static_cast<int>(q.size(1)),
          static_cast<int>(q.size(2)),
          static_cast<int>(q.size(3)),
          static_cast<int>(gh),
          static_cast<int>(gw),
          static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(3))))};
  TORCH_CHECK(gh * gw == s.n, "relpos_attention: a ", gh, "x", gw, " grid has ", gh * gw,
              " positions, q has N = ", s.n);
  TORCH_CHECK(table.dim() == 2 && table.size(0) == s.table_rows() && table.size(1) == s.heads &&
                  table.scalar_type() == at::kFloat,
              "relpos_attention: the table must be (", s.table_rows(), ", ", s.heads,
              ") float32, got ", table.sizes(), " ", table.scalar_type());
  return s;
}

void check_like(const at::Tensor& a, const at::Tensor& q, const char* name) {
  TORCH_CHECK(
      a.sizes() == q.sizes() && a.scalar_type() == q.scalar_type() && a.device() == q.device(),
      "relpos_attention: ", name, " must match q (", q.sizes(), " ", q.scalar_type(), " on ",
      q.device(), "), got ", a.sizes(), " ", a.scalar_type(), " on ", a.device());
}

template <typename F>
void dispatch(at::ScalarType t, F f) {
  switch (t) {
    case at::kFloat:
      return f(float{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    case at::kHalf:
      return f(c10::Half{});
    default:
      TORCH_CHECK(false, "relpos_attention: dtype ", t,
                  " is not supported (float32, bfloat16, float16 are)");
  }
}

}  // namespace

std::vector<at::Tensor> relpos_attention_forward(const at::Tensor& q_in, const at::Tensor& k_in,
                                                 const at::Tensor& v_in, const at::Tensor& table_in,
                                                 int64_t grid_h, int64_t grid_w) {
  TORCH_CHECK(q_in.is_cuda(), "relpos_attention: q must be on a CUDA device, got ", q_in.device());
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor table = table_in.contiguous();
  check_like(k, q, "k");
  check_like(v, q, "v");
  const Shape s = shape_of(q, table, grid_h, grid_w);
  const int64_t bh = q.size(0) * q.size(1);
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({q.size(0), q.size(1), q.size(2)}, q.options().dtype(at::kFloat));
  if (q.numel() == 0) return {out, lse};
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch(q.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    Tensors<T> t{};
    t.q = q.data_ptr<T>();
    t.k = k.data_ptr<T>();
    t.v = v.data_ptr<T>();
    t.table = table.data_ptr<float>();
    t.lse = lse.data_ptr<float>();
    t.o = out.data_ptr<T>();
    const int64_t bytes = relpos::forward_smem_bytes(s);
    allow_smem(forward_kernel<T>, bytes, s, bh, "forward");
    const dim3 grid(static_cast<unsigned>((s.n + kRows - 1) / kRows), static_cast<unsigned>(bh));
    forward_kernel<T><<<grid, kThreads, bytes, stream>>>(s, t);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, lse};
}

std::vector<at::Tensor> relpos_attention_backward(const at::Tensor& dout_in, const at::Tensor& q_in,
                                                  const at::Tensor& k_in, const at::Tensor& v_in,
                                                  const at::Tensor& out_in,
                                                  const at::Tensor& lse_in,
                                                  const at::Tensor& table_in, int64_t grid_h,
                                                  int64_t grid_w) {
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor out = out_in.contiguous(), lse = lse_in.contiguous();
  const at::Tensor dout = dout_in.to(q.scalar_type()).contiguous(), table = table_in.contiguous();
  for (auto [a, name] : {std::pair{&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "dout"}})
    check_like(*a, q, name);
  const Shape s = shape_of(q, table, grid_h, grid_w);
  const int64_t bh = q.size(0) * q.size(1);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  at::Tensor dtable = at::zeros_like(table);
  at::Tensor delta = at::empty_like(lse);
  if (q.numel() == 0) return {dq.zero_(), dk.zero_(), dv.zero_(), dtable};
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch(q.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    Tensors<T> t{};
    t.q = q.data_ptr<T>();
    t.k = k.data_ptr<T>();
    t.v = v.data_ptr<T>();
    t.out = out.data_ptr<T>();
    t.dout = dout.data_ptr<T>();
    t.table = table.data_ptr<float>();
    t.lse = lse.data_ptr<float>();
    t.delta = delta.data_ptr<float>();
    t.dq = dq.data_ptr<T>();
    t.dk = dk.data_ptr<T>();
    t.dv = dv.data_ptr<T>();
    t.dtable = dtable.data_ptr<float>();
    const dim3 grid(static_cast<unsigned>((s.n + kRows - 1) / kRows), static_cast<unsigned>(bh));
    const int64_t qb = relpos::backward_q_smem_bytes(s), kvb = relpos::backward_kv_smem_bytes(s);
    allow_smem(backward_q_kernel<T>, qb, s, bh, "backward (dq)");
    backward_q_kernel<T><<<grid, kThreads, qb, stream>>>(s, t);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    allow_smem(backward_kv_kernel<T>, kvb, s, bh, "backward (dk, dv)");
    backward_kv_kernel<T><<<grid, kThreads, kvb, stream>>>(s, t);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dq, dk, dv, dtable};
}

}  // namespace coatnet::cuda
