// The fused relative-position attention's blocks run with a CPU thread for each of their 128 CUDA
// threads (cuda/block_threads.h), one at a time, switching at each barrier: the tests' check that
// the blocks of relpos_attention_blocks.h have every barrier they need, which the serial
// emulation (relpos_attention_emulated.cpp) cannot see. A WMMA product is one warp's operation:
// its 32 lanes meet before it, lane 0 computes it, and they meet again after it; a float32
// product is split between the lanes with no barrier, as on the GPU.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cuda/block_threads.h"
#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_cpu.h"

namespace coatnet::cuda {

namespace {

using namespace relpos;

thread_local BlockThreads* tl_block = nullptr;
thread_local int tl_tid = 0;

struct ThreadedOps {
  static void sync() { tl_block->barrier(tl_tid, 0, kThreads); }
  static void syncwarp() { tl_block->barrier(tl_tid, tl_tid / kLanes * kLanes, kLanes); }
  template <bool kTransposedB, typename T>
  static void mma(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int cols, int k,
                  bool accumulate) {
    const int lane = tl_tid % kLanes;
    if constexpr (std::is_same_v<T, float>) {
      scalar_mma<kTransposedB>(lane, kLanes, C, ldc, A, lda, B, ldb, cols, k, accumulate);
    } else {
      syncwarp();
      if (lane == 0) scalar_mma<kTransposedB>(0, 1, C, ldc, A, lda, B, ldb, cols, k, accumulate);
      syncwarp();
    }
  }
};

// A CPU thread for each of the block's threads, taking turns in kOrder (cuda/block_threads.h).
template <BlockThreads::Order kOrder>
struct Threaded {
  template <typename F>
  static void run(F&& f) {
    BlockThreads threads(kThreads, kOrder);
    threads.run([&](int tid) {
      tl_block = &threads;
      tl_tid = tid;
      f(Team{tid, kThreads});
    });
  }
};
template <BlockThreads::Order kOrder>
using ThreadedExec = CpuExec<ThreadedOps, Threaded<kOrder>>;

template <BlockThreads::Order kOrder>
std::vector<at::Tensor> forward(const at::Tensor& qkv, const at::Tensor& table, int64_t heads) {
  return relpos::forward<ThreadedExec<kOrder>>(qkv, table, heads);
}

template <BlockThreads::Order kOrder>
std::vector<at::Tensor> backward(const at::Tensor& dout, const at::Tensor& qkv,
                                 const at::Tensor& out, const at::Tensor& lse,
                                 const at::Tensor& table, int64_t heads) {
  return relpos::backward<ThreadedExec<kOrder>>(dout, qkv, out, lse, table, heads);
}

bool applies(const at::Tensor& qkv, int64_t heads) {
  return qkv.is_cpu() && head_size(qkv, heads) != 0;
}

}  // namespace

const model::RelPosAttentionKernels& relpos_attention_threaded(bool descending) {
  using O = BlockThreads::Order;
  static const model::RelPosAttentionKernels ascending{forward<O::kAscending>,
                                                       backward<O::kAscending>, applies};
  static const model::RelPosAttentionKernels reversed{forward<O::kDescending>,
                                                      backward<O::kDescending>, applies};
  return descending ? reversed : ascending;
}

}  // namespace coatnet::cuda
