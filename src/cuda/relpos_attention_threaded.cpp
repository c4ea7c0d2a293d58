// The fused relative-position attention's blocks run with a CPU thread for each of their 128 CUDA
// threads (cuda/block_threads.h), one at a time, switching at each barrier: the tests' check that
// the blocks of relpos_attention_blocks.h have every barrier they need, which the serial
// emulation (relpos_attention_emulated.cpp) cannot see. A WMMA product is one warp's operation:
// its 32 lanes meet before it, lane 0 computes it, and they meet again after it; a float32
// product is split between the lanes with no barrier, as on the GPU.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cuda/block_threads.h"
#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_launch.h"

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

// Calls block(bh, tile, team, smem) for every block of a (B·heads, tiles) launch, each block's
// threads in `order`.
template <BlockThreads::Order kOrder, typename Block>
void for_blocks(const Shape& s, int64_t bytes, Block&& block) {
  std::vector<char> buffer(static_cast<size_t>(bytes) + 32);
  char* smem = buffer.data() + (32 - reinterpret_cast<uintptr_t>(buffer.data()) % 32) % 32;
  for (int bh = 0; bh < s.batch * s.heads; ++bh)
    for (int tile = 0; tile < s.tiles(); ++tile) {
      std::memset(smem, 0xff, static_cast<size_t>(bytes));  // NaN in float32, bf16, fp16
      BlockThreads threads(kThreads, kOrder);
      threads.run([&](int tid) {
        tl_block = &threads;
        tl_tid = tid;
        block(bh, tile, Team{tid, kThreads}, smem);
      });
    }
}

template <BlockThreads::Order kOrder>
struct ThreadedExec {
  using BFloat16 = c10::BFloat16;
  using Half = c10::Half;

  template <typename T, int D>
  static void forward(const Shape& s, const Args<T>& a, int64_t bytes) {
    for_blocks<kOrder>(s, bytes, [&](int bh, int tile, const Team& tm, char* smem) {
      forward_block<ThreadedOps, T, D>(s, a, bh, tile, tm, smem);
    });
  }
  template <typename T, int D>
  static void backward(const Shape& s, const Args<T>& a, int64_t dq_bytes, int64_t dkv_bytes) {
    for_blocks<kOrder>(s, dq_bytes, [&](int bh, int tile, const Team& tm, char* smem) {
      backward_dq_block<ThreadedOps, T, D>(s, a, bh, tile, tm, smem);
    });
    for_blocks<kOrder>(s, dkv_bytes, [&](int bh, int tile, const Team& tm, char* smem) {
      backward_dkv_block<ThreadedOps, T, D>(s, a, bh, tile, tm, smem);
    });
  }
  static void reduce_table(const Shape& s, const float* part, float* dtable) {
    for (int r = 0; r < s.table_rows(); ++r)
      for (int h = 0; h < s.heads; ++h) relpos::reduce_table(s, part, dtable, r, h);
  }
};

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
