// The thread body of the depthwise 3x3 stride-2 convolution's input gradient (dw_conv.h),
// written once for the CUDA kernel (dw_conv.cu) and a serial CPU emulation the tests run
// without a GPU (dw_conv_emulated.cpp).
//
// Channels-last: an input pixel (n, h, w) holds C channels, dy's pixels (n, oh, ow) likewise.
// The forward reads input row h = 2·oh - 1 + kh, so an input pixel's gradient gathers dy at
// oh = (h + 1 - kh) / 2 for the kh where that is a whole number inside dy: one tap on even rows,
// two on odd ones, and so for columns: 1, 2 or 4 of the 9 taps. A thread owns a pack of V
// neighbouring channels of some pixels of one input row; for each it reads its taps of dy and the
// weights (float32, tap-major: w9[tap·C + c]) and writes its pack once, so dx is written once and
// dy read about 2.25 times, mostly from cache. Sums in float32.
#pragma once

#include <cstdint>

#include "cuda/elements.h"

namespace coatnet::cuda::dw_conv {

constexpr int kThreads = 256;

struct Shape {
  int64_t n, h, w, oh, ow, packs;  // packs of V channels per pixel
};

// A grid of (input rows (n, h), pack chunks) blocks of (lanes, columns) threads: a block's lanes
// cover at most kThreads packs, split evenly, and each thread walks the row's columns
// first_w, first_w + step, ... So a thread finds its row's n and h once (one division), and the
// row's taps (which kh) are the same for the whole block. Rows are grid x, which may be large.
struct Geometry {
  int64_t grid_x, grid_y, block_x, block_y;
};

inline Geometry geometry(int64_t rows, int64_t packs) {
  const int64_t chunks = (packs + kThreads - 1) / kThreads;
  const int64_t tx = (packs + chunks - 1) / chunks;
  const int64_t ty = kThreads / tx > 0 ? kThreads / tx : 1;
  return {rows, chunks, tx, ty};
}

struct Lane {
  int64_t row, pack;  // input row n·H + h; pack >= packs: the thread has none
  int64_t first_w, step;
};
CN_HD Lane lane_of(const Geometry& g, int64_t bx, int64_t by, int64_t tx, int64_t ty) {
  return {bx, by * g.block_x + tx, ty, g.block_y};
}

template <typename T, int V>
CN_HD void input_grad_lane(const T* dy, const float* w9, T* dx, const Shape& s, const Lane& l) {
  using P = Pack<T, V>;
  const int64_t channels = s.packs * V;
  const int64_t n = l.row / s.h, h = l.row % s.h;
  for (int64_t w = l.first_w; w < s.w; w += l.step) {
    float acc[V];
    CN_UNROLL
    for (int k = 0; k < V; ++k) acc[k] = 0.0f;
    CN_UNROLL
    for (int kh = 0; kh < 3; ++kh) {
      const int64_t th = h + 1 - kh;  // 2·oh
      if (th < 0 || (th & 1) || th / 2 >= s.oh) continue;
      CN_UNROLL
      for (int kw = 0; kw < 3; ++kw) {
        const int64_t tw = w + 1 - kw;
        if (tw < 0 || (tw & 1) || tw / 2 >= s.ow) continue;
        const P g = reinterpret_cast<const P*>(
            dy)[((n * s.oh + th / 2) * s.ow + tw / 2) * s.packs + l.pack];
        const float* wt = w9 + (kh * 3 + kw) * channels + l.pack * V;
        CN_UNROLL
        for (int k = 0; k < V; ++k) acc[k] = fmaf(to_float(g.v[k]), wt[k], acc[k]);
      }
    }
    P out;
    CN_UNROLL
    for (int k = 0; k < V; ++k) from_float(acc[k], &out.v[k]);
    reinterpret_cast<P*>(dx)[(l.row * s.w + w) * s.packs + l.pack] = out;
  }
}

}  // namespace coatnet::cuda::dw_conv
