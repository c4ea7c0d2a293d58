// The serial CPU executor of the fused relative-position attention (relpos_attention_launch.h):
// every block of the CUDA launch, one after another, each with one "thread" that runs every warp
// and lane of each phase in order, the tile products as loops (relpos::scalar_mma). Shared
// memory is a fresh buffer of NaN bytes per block, so a value read before it is written shows in
// the result, and each 16-bit tile product is checked against WMMA's rules. Built with or
// without nvcc, so CI checks the kernels' algorithm.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_launch.h"

namespace coatnet::cuda {

namespace {

using namespace relpos;

// What WMMA asks of a tile product (CUDA C++ Programming Guide, "Warp Matrix Functions"; the
// GPU runs bf16/fp16 products on it): every tile 32-byte aligned, leading dimensions a multiple
// of 16 bytes (8 16-bit elements, 4 float32 accumulators), 16-wide tiles, k at most 64 (the
// fragments wmma_tiles keeps). Plain loops would compute the right result anyway, and the GPU
// would read or fault otherwise: the emulation checks it so that CI does.
template <typename T>
void check_wmma(const float* C, int ldc, const T* A, int lda, const T* B, int ldb, int cols,
                int k) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 32 == 0; };
  const char* bad = !aligned(A) || !aligned(B) || !aligned(C) ? "a tile is not 32-byte aligned"
                    : lda % 8 || ldb % 8  ? "a 16-bit leading dimension is not a multiple of 8"
                    : ldc % 4             ? "ldc is not a multiple of 4"
                    : cols % 16 || k % 16 ? "cols or k is not a multiple of 16"
                    : k > 64              ? "k is over 64"
                                          : nullptr;
  if (bad)
    throw std::logic_error(std::string("relpos_attention: a tile product breaks WMMA's rules: ") +
                           bad + " (lda " + std::to_string(lda) + ", ldb " + std::to_string(ldb) +
                           ", ldc " + std::to_string(ldc) + ", cols " + std::to_string(cols) +
                           ", k " + std::to_string(k) + ")");
}

struct EmulatedOps {
  static void sync() {}
  static void syncwarp() {}
  template <bool kTransposedB, typename T>
  static void mma(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int cols, int k,
                  bool accumulate) {
    if constexpr (!std::is_same_v<T, float>) check_wmma(C, ldc, A, lda, B, ldb, cols, k);
    scalar_mma<kTransposedB>(0, 1, C, ldc, A, lda, B, ldb, cols, k, accumulate);
  }
};

// Calls block(bh, tile, smem) for every block of a (B·heads, tiles) launch.
template <typename Block>
void for_blocks(const Shape& s, int64_t bytes, Block&& block) {
  // 32-byte aligned, as the kernels' shared memory (__align__(32)).
  std::vector<char> buffer(static_cast<size_t>(bytes) + 32);
  char* smem = buffer.data() + (32 - reinterpret_cast<uintptr_t>(buffer.data()) % 32) % 32;
  for (int bh = 0; bh < s.batch * s.heads; ++bh)
    for (int tile = 0; tile < s.tiles(); ++tile) {
      std::memset(smem, 0xff, static_cast<size_t>(bytes));  // NaN in float32, bf16, fp16
      block(bh, tile, smem);
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
