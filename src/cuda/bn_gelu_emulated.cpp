// The serial CPU executor of the fused BatchNorm + GELU (bn_gelu_launch.h): every block and
// every thread of the CUDA launch geometry, one after another, running the same thread bodies
// (bn_gelu_blocks.h) and adding the reduction's lanes in the same order as the kernel's shared
// memory does. Built with or without nvcc, so CI checks the kernels' algorithm.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <vector>

#include "cuda/bn_gelu.h"
#include "cuda/bn_gelu_launch.h"

namespace coatnet::cuda {

namespace {

using namespace bn_gelu;

// Calls f(lane, tx, ty) for every thread of block (bx, by).
template <typename F>
void for_threads(const Geometry& g, int64_t rows, int64_t bx, int64_t by, F&& f) {
  for (int64_t ty = 0; ty < g.block_y; ++ty)
    for (int64_t tx = 0; tx < g.block_x; ++tx) f(lane_of(g, rows, bx, by, tx, ty), tx, ty);
}

template <typename F>
void for_blocks(const Geometry& g, F&& f) {
  for (int64_t by = 0; by < g.grid_y; ++by)
    for (int64_t bx = 0; bx < g.grid_x; ++bx) f(bx, by);
}

struct EmulatedExec {
  using BFloat16 = c10::BFloat16;
  using Half = c10::Half;

  // Few "multiprocessors", so that even small tensors take several row blocks.
  static int sms() { return 3; }

  static std::tuple<at::Tensor, at::Tensor> stats(const at::Tensor& x, double eps) {
    auto [var, mean] = at::var_mean(x.to(at::kFloat), {0, 2, 3}, /*correction=*/0);
    return {mean, (var + eps).rsqrt()};
  }
  static void forward_channels(int64_t channels, const float* mean, const float* invstd,
                               const float* weight, const float* bias, float* ab,
                               float* running_mean, float* running_var, float momentum, float eps,
                               float unbias) {
    for (int64_t c = 0; c < channels; ++c)
      forward_channel(c, mean, invstd, weight, bias, ab, running_mean, running_var, channels,
                      momentum, eps, unbias);
  }
  static void affine_channels(int64_t channels, const float* mean, const float* invstd,
                              const float* weight, const float* bias, float* ab) {
    for (int64_t c = 0; c < channels; ++c)
      affine_channel(c, mean, invstd, weight, bias, ab, channels);
  }
  static void backward_channels(int64_t channels, const float* partial, int64_t blocks,
                                const float* ab, const float* invstd, float* pq, float* dweight,
                                float* dbias, float inv_rows) {
    for (int64_t c = 0; c < channels; ++c)
      backward_channel(c, partial, blocks, ab, invstd, pq, dweight, dbias, channels, inv_rows);
  }
  template <typename T, int V>
  static void forward_rows(const Geometry& g, int64_t rows, const T* x, const float* ab, T* y,
                           int64_t packs) {
    for_blocks(g, [&](int64_t bx, int64_t by) {
      for_threads(g, rows, bx, by, [&](const Lane& l, int64_t, int64_t) {
        if (l.pack < packs) forward_lane<T, V>(x, ab, y, packs, l);
      });
    });
  }
  template <typename T, int V, bool S>
  static void reduce_rows(const Geometry& g, int64_t rows, const T* dy, const T* x, const float* ab,
                          const float* mean, const float* dsample, int64_t hw, float* partial,
                          int64_t packs) {
    const int64_t channels = packs * V;
    std::vector<float> sums(2 * g.block_x * g.block_y * V);  // the kernel's shared memory
    for_blocks(g, [&](int64_t bx, int64_t by) {
      for_threads(g, rows, bx, by, [&](const Lane& l, int64_t tx, int64_t ty) {
        float* s1 = &sums[(ty * g.block_x + tx) * V];
        float* s2 = s1 + g.block_x * g.block_y * V;
        for (int k = 0; k < V; ++k) s1[k] = s2[k] = 0.0f;
        if (l.pack < packs) reduce_lane<T, V, S>(dy, x, ab, mean, dsample, hw, packs, l, s1, s2);
      });
      for (int64_t tx = 0; tx < g.block_x; ++tx) {
        const int64_t pack = bx * g.block_x + tx;
        if (pack >= packs) continue;
        for (int k = 0; k < V; ++k) {
          float t1 = 0.0f, t2 = 0.0f;
          for (int64_t ty = 0; ty < g.block_y; ++ty) {
            t1 += sums[(ty * g.block_x + tx) * V + k];
            t2 += sums[(g.block_y + ty) * g.block_x * V + tx * V + k];
          }
          partial[2 * by * channels + pack * V + k] = t1;
          partial[(2 * by + 1) * channels + pack * V + k] = t2;
        }
      }
    });
  }
  template <typename T, int V, bool S>
  static void elemt_rows(const Geometry& g, int64_t rows, const T* dy, const T* x, const float* ab,
                         const float* pq, const float* mean, const float* dsample, int64_t hw,
                         T* dx, int64_t packs) {
    for_blocks(g, [&](int64_t bx, int64_t by) {
      for_threads(g, rows, bx, by, [&](const Lane& l, int64_t, int64_t) {
        if (l.pack < packs) elemt_lane<T, V, S>(dy, x, ab, pq, mean, dsample, hw, dx, packs, l);
      });
    });
  }
};

bool applies(const at::Tensor& x) {
  return x.is_cpu() && takes(x);
}

}  // namespace

const model::BnGeluKernels& bn_gelu_emulated() {
  static const model::BnGeluKernels k{bn_gelu::forward<EmulatedExec>,
                                      bn_gelu::backward<EmulatedExec>, applies};
  return k;
}

}  // namespace coatnet::cuda
