// The serial CPU executor of the fused relative-position attention (relpos_attention_launch.h):
// every block of the CUDA launch, one after another, each with one "thread" that runs every warp
// and lane of each phase in order, the tile products as loops (relpos::scalar_mma). Shared
// memory is a fresh buffer of NaN bytes per block, so a value read before it is written shows in
// the result. Built with or without nvcc, so CI checks the kernels' algorithm.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstring>
#include <vector>

#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_launch.h"

namespace coatnet::cuda {

namespace {

using namespace relpos;

struct EmulatedOps {
  static void sync() {}
  static void syncwarp() {}
  template <bool kTransposedB, typename T>
  static void mma(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int cols, int k,
                  bool accumulate) {
    scalar_mma<kTransposedB>(0, 1, C, ldc, A, lda, B, ldb, cols, k, accumulate);
  }
};

// Calls block(bh, tile, smem) for every block of a (B·heads, tiles) launch.
template <typename Block>
void for_blocks(const Shape& s, int64_t bytes, Block&& block) {
  std::vector<double> smem(static_cast<size_t>(bytes + 7) / 8);  // 8-byte aligned at least
  for (int bh = 0; bh < s.batch * s.heads; ++bh)
    for (int tile = 0; tile < s.tiles(); ++tile) {
      std::memset(smem.data(), 0xff, smem.size() * 8);  // NaN in float32, bfloat16, float16
      block(bh, tile, reinterpret_cast<char*>(smem.data()));
    }
}

struct EmulatedExec {
  using BFloat16 = c10::BFloat16;
  using Half = c10::Half;
  static constexpr Team kSerial{0, 1};

  template <typename T, int D>
  static void forward(const Shape& s, const Args<T>& a, int64_t bytes) {
    for_blocks(s, bytes, [&](int bh, int tile, char* smem) {
      forward_block<EmulatedOps, T, D>(s, a, bh, tile, kSerial, smem);
    });
  }
  template <typename T, int D>
  static void backward(const Shape& s, const Args<T>& a, int64_t dq_bytes, int64_t dkv_bytes) {
    for_blocks(s, dq_bytes, [&](int bh, int tile, char* smem) {
      backward_dq_block<EmulatedOps, T, D>(s, a, bh, tile, kSerial, smem);
    });
    for_blocks(s, dkv_bytes, [&](int bh, int tile, char* smem) {
      backward_dkv_block<EmulatedOps, T, D>(s, a, bh, tile, kSerial, smem);
    });
  }
  static void reduce_table(const Shape& s, const float* part, float* dtable) {
    for (int r = 0; r < s.table_rows(); ++r)
      for (int h = 0; h < s.heads; ++h) relpos::reduce_table(s, part, dtable, r, h);
  }
};

std::vector<at::Tensor> forward(const at::Tensor& qkv, const at::Tensor& table, int64_t heads) {
  return relpos::forward<EmulatedExec>(qkv, table, heads);
}

std::vector<at::Tensor> backward(const at::Tensor& dout, const at::Tensor& qkv,
                                 const at::Tensor& out, const at::Tensor& lse,
                                 const at::Tensor& table, int64_t heads) {
  return relpos::backward<EmulatedExec>(dout, qkv, out, lse, table, heads);
}

bool applies(const at::Tensor& qkv, int64_t heads) {
  return qkv.is_cpu() && head_size(qkv, heads) != 0;
}

}  // namespace

const model::RelPosAttentionKernels& relpos_attention_emulated() {
  static const model::RelPosAttentionKernels k{forward, backward, applies};
  return k;
}

}  // namespace coatnet::cuda
