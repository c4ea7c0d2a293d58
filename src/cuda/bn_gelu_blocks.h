// The thread bodies of the fused BatchNorm + GELU (bn_gelu.h), written once for two executors:
// the CUDA kernels (bn_gelu.cu) and a serial CPU emulation that the tests run without a GPU
// (bn_gelu_emulated.cpp), so CI checks the indexing, the launch geometry and the arithmetic.
//
// The activations are channels-last, so memory holds `rows` = N·H·W rows of C channels. A thread
// (a "lane") owns one pack of V neighbouring channels (16 bytes when C allows, else V = 1) for
// the whole kernel, so its per-channel coefficients stay in registers and no index is divided by
// C; it walks the rows first_row, first_row + stride, ... below end_row, kUnroll at a time so
// that several loads are in flight. Per-channel coefficients are float32:
//   forward   z = x·a + b,  a = weight·invstd,  b = bias - mean·a;  y = gelu(z)
//   backward  dz = (dy + t)·gelu'(z);  S1 = Σ dz,  S2 = Σ dz·(x - mean)  (over the rows)
//             dx = a·dz + (x - mean)·p + q,  p = -a·invstd²·S2/rows,  q = -a·S1/rows
//             dweight = invstd·S2,  dbias = S1
// GELU is the exact (erf) form, as at::gelu's default. t is 0, or with a per-sample term S (the
// template flag) the gradient that reached y through its spatial mean: one float32 per sample n
// and channel, dsample[n·C + c], already divided by H·W (SampleTerm below).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/elements.h"

namespace coatnet::cuda::bn_gelu {

constexpr int kThreads = 256;  // a block's threads (lanes × rows)
constexpr int kUnroll = 4;     // rows a lane loads before it computes

CN_HD float gelu(float z) {
  return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
}
// d gelu / dz = Φ(z) + z·φ(z).
CN_HD float gelu_grad(float z) {
  return 0.5f * (1.0f + erff(z * 0.70710678118654752f)) +
         z * 0.39894228040143268f * expf(-0.5f * z * z);
}

// A grid of (chunks, row blocks) blocks of (lanes, rows) threads: the lanes of a block cover at
// most kThreads packs, split evenly; about `per_sm` blocks per SM in all, each at least kUnroll
// rows per thread. The element-wise passes fill the GPU (8: 2,048 threads per SM); the reduction
// takes 2, so that the per-channel pass after it adds few row blocks.
struct Geometry {
  int64_t grid_x, grid_y, block_x, block_y, rows_per_block;
};

inline Geometry rows_geometry(int64_t rows, int64_t packs, int sms, int per_sm) {
  const int64_t chunks = (packs + kThreads - 1) / kThreads;
  const int64_t tx = (packs + chunks - 1) / chunks;
  const int64_t ty = std::max<int64_t>(1, kThreads / tx);
  const int64_t by = std::max<int64_t>(
      1, std::min<int64_t>((rows + ty * kUnroll - 1) / (ty * kUnroll),
                           (per_sm * static_cast<int64_t>(sms) + chunks - 1) / chunks));
  const int64_t per_block = (rows + by - 1) / by;
  return {chunks, (rows + per_block - 1) / per_block, tx, ty, per_block};
}

struct Lane {
  int64_t pack;                      // packs of the row: pack·V .. pack·V + V-1 are its channels
  int64_t first_row, end_row, step;  // rows first_row, first_row + step, ... < end_row
};

CN_HD Lane lane_of(const Geometry& g, int64_t rows, int64_t bx, int64_t by, int64_t tx,
                   int64_t ty) {
  const int64_t end = (by + 1) * g.rows_per_block;
  return {bx * g.block_x + tx, by * g.rows_per_block + ty, end < rows ? end : rows, g.block_y};
}

template <typename T, int V>
CN_HD void forward_lane(const T* x, const float* ab, T* y, int64_t packs, const Lane& l) {
  using P = Pack<T, V>;
  const int64_t channels = packs * V;
  float a[V], b[V];
  CN_UNROLL
  for (int k = 0; k < V; ++k) {
    a[k] = ab[l.pack * V + k];
    b[k] = ab[channels + l.pack * V + k];
  }
  for (int64_t r = l.first_row; r < l.end_row; r += kUnroll * l.step) {
    P in[kUnroll];
    CN_UNROLL
    for (int u = 0; u < kUnroll; ++u)
      if (r + u * l.step < l.end_row)
        in[u] = reinterpret_cast<const P*>(x)[(r + u * l.step) * packs + l.pack];
    CN_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      if (r + u * l.step >= l.end_row) break;
      P out;
      CN_UNROLL
      for (int k = 0; k < V; ++k)
        from_float(gelu(fmaf(to_float(in[u].v[k]), a[k], b[k])), &out.v[k]);
      reinterpret_cast<P*>(y)[(r + u * l.step) * packs + l.pack] = out;
    }
  }
}

// The per-sample term t of the lane's channels at a row (sample n = row / hw). A lane's rows
// increase, so it divides and reloads its V values only where a row enters another sample.
// Without S there is none.
template <int V, bool S>
struct SampleTerm {
  const float* dsample;
  int64_t hw, channels, first_channel;
  int64_t end = -1;  // the first row past the loaded sample's
  float v[V] = {};

  CN_HD void seek(int64_t row) {
    if constexpr (S) {
      if (row < end) return;
      const int64_t n = row / hw;
      end = (n + 1) * hw;
      CN_UNROLL
      for (int k = 0; k < V; ++k) v[k] = dsample[n * channels + first_channel + k];
    }
  }
  // dy + t for channel k (dy itself without S: adding 0.0f is not a no-op in IEEE arithmetic).
  CN_HD float add(int k, float dy) const { return S ? dy + v[k] : dy; }
};

// The backward passes' walk over the lane's rows: kUnroll rows' packs of dy and x loaded first
// (several loads in flight), then body(row, dy pack, x pack) for each.
template <typename T, int V, typename Body>
CN_HD void walk_pairs(const T* dy, const T* x, int64_t packs, const Lane& l, Body&& body) {
  using P = Pack<T, V>;
  for (int64_t r = l.first_row; r < l.end_row; r += kUnroll * l.step) {
    P g[kUnroll], in[kUnroll];
    CN_UNROLL
    for (int u = 0; u < kUnroll; ++u)
      if (r + u * l.step < l.end_row) {
        g[u] = reinterpret_cast<const P*>(dy)[(r + u * l.step) * packs + l.pack];
        in[u] = reinterpret_cast<const P*>(x)[(r + u * l.step) * packs + l.pack];
      }
    CN_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      if (r + u * l.step >= l.end_row) break;
      body(r + u * l.step, g[u], in[u]);
    }
  }
}

// The lane's S1 and S2 (s1[V], s2[V]) over its rows.
template <typename T, int V, bool S>
CN_HD void reduce_lane(const T* dy, const T* x, const float* ab, const float* mean,
                       const float* dsample, int64_t hw, int64_t packs, const Lane& l, float* s1,
                       float* s2) {
  const int64_t channels = packs * V;
  float a[V], b[V], m[V];
  CN_UNROLL
  for (int k = 0; k < V; ++k) {
    a[k] = ab[l.pack * V + k];
    b[k] = ab[channels + l.pack * V + k];
    m[k] = mean[l.pack * V + k];
    s1[k] = s2[k] = 0.0f;
  }
  SampleTerm<V, S> t{dsample, hw, channels, l.pack * V};
  walk_pairs<T, V>(dy, x, packs, l, [&](int64_t row, const Pack<T, V>& g, const Pack<T, V>& in) {
    t.seek(row);
    CN_UNROLL
    for (int k = 0; k < V; ++k) {
      const float xv = to_float(in.v[k]);
      const float dz = t.add(k, to_float(g.v[k])) * gelu_grad(fmaf(xv, a[k], b[k]));
      s1[k] += dz;
      s2[k] += dz * (xv - m[k]);
    }
  });
}

template <typename T, int V, bool S>
CN_HD void elemt_lane(const T* dy, const T* x, const float* ab, const float* pq, const float* mean,
                      const float* dsample, int64_t hw, T* dx, int64_t packs, const Lane& l) {
  const int64_t channels = packs * V;
  float a[V], b[V], m[V], p[V], q[V];
  CN_UNROLL
  for (int k = 0; k < V; ++k) {
    const int64_t c = l.pack * V + k;
    a[k] = ab[c];
    b[k] = ab[channels + c];
    m[k] = mean[c];
    p[k] = pq[c];
    q[k] = pq[channels + c];
  }
  SampleTerm<V, S> t{dsample, hw, channels, l.pack * V};
  walk_pairs<T, V>(dy, x, packs, l, [&](int64_t row, const Pack<T, V>& g, const Pack<T, V>& in) {
    t.seek(row);
    Pack<T, V> out;
    CN_UNROLL
    for (int k = 0; k < V; ++k) {
      const float xv = to_float(in.v[k]);
      const float dz = t.add(k, to_float(g.v[k])) * gelu_grad(fmaf(xv, a[k], b[k]));
      from_float(fmaf(a[k], dz, fmaf(xv - m[k], p[k], q[k])), &out.v[k]);
    }
    reinterpret_cast<Pack<T, V>*>(dx)[row * packs + l.pack] = out;
  });
}

// Per channel c: a and b into ab[c], ab[channels + c].
CN_HD void affine_channel(int64_t c, const float* mean, const float* invstd, const float* weight,
                          const float* bias, float* ab, int64_t channels) {
  const float a = weight[c] * invstd[c];
  ab[c] = a;
  ab[channels + c] = bias[c] - mean[c] * a;
}

// Per channel c in the forward: a, b and BatchNorm's running statistics (the variance recovered
// from invstd, as ATen's SyncBatchNorm does on the GPU; unbias = rows / (rows - 1)).
CN_HD void forward_channel(int64_t c, const float* mean, const float* invstd, const float* weight,
                           const float* bias, float* ab, float* running_mean, float* running_var,
                           int64_t channels, float momentum, float eps, float unbias) {
  affine_channel(c, mean, invstd, weight, bias, ab, channels);
  const float s = invstd[c];
  const float var = 1.0f / (s * s) - eps;
  running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
  running_var[c] = (1.0f - momentum) * running_var[c] + momentum * var * unbias;
}

// Per channel c in the backward: the row blocks' partial sums (partial[block][0 or 1][c]) added
// in order, the parameters' gradients, and p, q into pq[c], pq[channels + c].
CN_HD void backward_channel(int64_t c, const float* partial, int64_t blocks, const float* ab,
                            const float* invstd, float* pq, float* dweight, float* dbias,
                            int64_t channels, float inv_rows) {
  float s1 = 0.0f, s2 = 0.0f;
  for (int64_t s = 0; s < blocks; ++s) {
    s1 += partial[2 * s * channels + c];
    s2 += partial[(2 * s + 1) * channels + c];
  }
  const float is = invstd[c], a = ab[c];
  dweight[c] = s2 * is;
  dbias[c] = s1;
  pq[c] = -a * is * is * s2 * inv_rows;
  pq[channels + c] = -a * s1 * inv_rows;
}

}  // namespace coatnet::cuda::bn_gelu
