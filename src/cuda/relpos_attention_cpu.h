// The CPU executors of the fused relative-position attention's blocks (relpos_attention_launch.h):
// every block of a launch, one after another, each in fresh shared memory of NaN bytes (32-byte
// aligned, as the kernels'), so that a value read before it is written shows in the result.
// How one block's threads run is the Runner's: all of them as one serial thread
// (relpos_attention_emulated.cpp) or a CPU thread for each (relpos_attention_threaded.cpp).
//   Runner::run(f)   calls f(team) for the block's threads
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda/relpos_attention_launch.h"

namespace coatnet::cuda::relpos {

// Calls block(bh, tile, smem) for every block of a (B·heads, tiles) launch.
template <typename Block>
void for_cpu_blocks(const Shape& s, int64_t bytes, Block&& block) {
  std::vector<char> buffer(static_cast<size_t>(bytes) + 32);
  char* smem = buffer.data() + (32 - reinterpret_cast<uintptr_t>(buffer.data()) % 32) % 32;
  for (int bh = 0; bh < s.batch * s.heads; ++bh)
    for (int tile = 0; tile < s.tiles(); ++tile) {
      std::memset(smem, 0xff, static_cast<size_t>(bytes));  // NaN in float32, bf16, fp16
      block(bh, tile, smem);
    }
}

template <typename Ops, typename Runner>
struct CpuExec {
  using BFloat16 = c10::BFloat16;
  using Half = c10::Half;

  template <typename T, int D>
  static void forward(const Shape& s, const Args<T>& a, int64_t bytes) {
    for_cpu_blocks(s, bytes, [&](int bh, int tile, char* smem) {
      Runner::run([&](const Team& tm) { forward_block<Ops, T, D>(s, a, bh, tile, tm, smem); });
    });
  }
  template <typename T, int D>
  static void backward(const Shape& s, const Args<T>& a, int64_t dq_bytes, int64_t dkv_bytes) {
    for_cpu_blocks(s, dq_bytes, [&](int bh, int tile, char* smem) {
      Runner::run([&](const Team& tm) { backward_dq_block<Ops, T, D>(s, a, bh, tile, tm, smem); });
    });
    for_cpu_blocks(s, dkv_bytes, [&](int bh, int tile, char* smem) {
      Runner::run([&](const Team& tm) { backward_dkv_block<Ops, T, D>(s, a, bh, tile, tm, smem); });
    });
  }
  static void reduce_table(const Shape& s, const float* part, float* dtable) {
    for (int r = 0; r < s.table_rows(); ++r)
      for (int h = 0; h < s.heads; ++h) relpos::reduce_table(s, part, dtable, r, h);
  }
};

}  // namespace coatnet::cuda::relpos
