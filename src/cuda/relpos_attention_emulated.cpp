// The serial CPU executor of the fused relative-position attention (relpos_attention_launch.h):
// every block of the CUDA launch, one after another, each with one "thread" that runs every warp
// and lane of each phase in order, the tile products as loops (relpos::scalar_mma). Shared
// memory is a fresh buffer of NaN bytes per block, so a value read before it is written shows in
// the result, and each 16-bit tile product is checked against WMMA's rules. Built with or
// without nvcc, so CI checks the kernels' algorithm.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_cpu.h"

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

// One "thread" runs every warp and lane of the block, phase after phase.
struct Serial {
  template <typename F>
  static void run(F&& f) {
    f(Team{0, 1});
  }
};
using EmulatedExec = CpuExec<EmulatedOps, Serial>;

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
