// The thread blocks of the fused relative-position attention (relpos_attention.h), written once
// for two executors: the CUDA kernels (relpos_attention.cu: 256 threads a block, shared memory,
// atomics) and a serial CPU emulation that the tests run where there is no GPU (one "thread" a
// block, a heap buffer for shared memory). Every phase is a block-stride loop over work items
// that each own their outputs, with Ops::sync() between phases, so both executors compute the
// same sums in the same order per output.
//
// Per (batch·head) and a tile of kRows queries (forward, backward for dq and the table) or keys
// (backward for dk and dv), the keys or queries are visited in chunks of kChunk. Scores are
// s_ij = (q_i·scale)·k_j + table[offset(i, j), head], never stored as an N×N tensor in memory:
//   forward:   p = softmax_j(s), out = p·v, lse_i = log Σ_j exp(s_ij) kept for the backward
//   backward:  delta_i = dout_i·out_i, p_ij = exp(s_ij − lse_i), ds_ij = p_ij (dout_i·v_j −
//   delta_i)
//              dq = scale·ds·k, dk = dsᵀ·(q·scale), dv = pᵀ·dout, dtable[offset(i,j)] += Σ ds_ij
// All arithmetic is float32 whatever the input type (float, bfloat16, half).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define CN_HD __host__ __device__ __forceinline__
#else
#define CN_HD inline
#endif

namespace coatnet::cuda::relpos {

constexpr int kRows = 32;      // queries (or keys) a block owns
constexpr int kChunk = 64;     // keys (or queries) visited per pass
constexpr int kThreads = 256;  // CUDA threads a block
constexpr int kParts = 8;      // threads sharing one row's softmax reductions

CN_HD int imin(int a, int b) {
  return a < b ? a : b;
}

struct Shape {
  int heads, n, d, gh, gw;  // heads, tokens (gh·gw), head size, grid
  float scale;              // 1/sqrt(d)
  CN_HD int table_rows() const { return (2 * gh - 1) * (2 * gw - 1); }
  // The table row of query i and key j: model::relative_position_index's formula.
  CN_HD int offset(int i, int j) const {
    const int yi = i / gw, xi = i % gw, yj = j / gw, xj = j % gw;
    return (yi - yj + gh - 1) * (2 * gw - 1) + (xi - xj + gw - 1);
  }
};

template <typename T>
struct Tensors {
  const T *q, *k, *v, *out, *dout;  // (B·H, N, D) each; out/dout only for the backward
  const float* table;               // (table rows, heads)
  float *lse, *delta;               // (B·H, N): written by forward / backward_q
  T *o, *dq, *dk, *dv;              // outputs
  float* dtable;                    // (table rows, heads), accumulated
};

template <typename T>
CN_HD float to_f(T x) {
  return static_cast<float>(x);
}

// Hands out consecutive pieces of the block's shared memory; `floats` is what a layout needs.
struct Carve {
  float* p;
  int floats = 0;
  CN_HD float* take(int n) {
    float* r = p ? p + floats : nullptr;
    floats += n;
    return r;
  }
};

// For every output (r, c) of an M×N block: acc = Σ_k A[r·lda + k]·B[c·ldb + k], then epi(r, c,
// acc). Each work item makes RM consecutive rows × RN columns strided by the column groups, so
// that neighbouring threads read neighbouring rows of B (odd ldb: no bank conflicts) while they
// share A's rows (broadcast).
template <int RM, int RN, typename Epi>
CN_HD void gemm_nt(int tid, int nthreads, int M, int N, int K, const float* A, int lda,
                   const float* B, int ldb, Epi epi) {
  const int row_groups = (M + RM - 1) / RM, col_groups = (N + RN - 1) / RN;
  for (int item = tid; item < row_groups * col_groups; item += nthreads) {
    const int r0 = (item / col_groups) * RM, c0 = item % col_groups;
    const float* a[RM];
    const float* b[RN];
    for (int u = 0; u < RM; ++u) a[u] = A + imin(r0 + u, M - 1) * lda;  // clamped: read, unused
    for (int u = 0; u < RN; ++u) b[u] = B + imin(c0 + u * col_groups, N - 1) * ldb;
    float acc[RM][RN] = {};
    for (int k = 0; k < K; ++k) {
      float av[RM], bv[RN];
      for (int u = 0; u < RM; ++u) av[u] = a[u][k];
      for (int u = 0; u < RN; ++u) bv[u] = b[u][k];
      for (int x = 0; x < RM; ++x)
        for (int y = 0; y < RN; ++y) acc[x][y] += av[x] * bv[y];
    }
    for (int x = 0; x < RM; ++x)
      for (int y = 0; y < RN; ++y) {
        const int r = r0 + x, c = c0 + y * col_groups;
        if (r < M && c < N) epi(r, c, acc[x][y]);
      }
  }
}

// rows × d of a (B·H, N, D) tensor from row `row0`, as float (times `mul`), into dst[i·ld + x].
template <typename T>
CN_HD void load_rows(int tid, int nthreads, const T* src, int row0, int rows, int d, float mul,
                     float* dst, int ld) {
  for (int e = tid; e < rows * d; e += nthreads) {
    const int i = e / d, x = e % d;
    dst[i * ld + x] = to_f(src[static_cast<int64_t>(row0 + i) * d + x]) * mul;
  }
}

// The same, transposed: dst[x·ld + i].
template <typename T>
CN_HD void load_rows_t(int tid, int nthreads, const T* src, int row0, int rows, int d, float mul,
                       float* dst, int ld) {
  for (int e = tid; e < rows * d; e += nthreads) {
    const int i = e / d, x = e % d;
    dst[x * ld + i] = to_f(src[static_cast<int64_t>(row0 + i) * d + x]) * mul;
  }
}

CN_HD void fill(int tid, int nthreads, float* p, int n, float v) {
  for (int e = tid; e < n; e += nthreads) p[e] = v;
}

// The head's column of the table, into tab[r].
CN_HD void load_table(int tid, int nthreads, const Shape& s, const float* table, int h,
                      float* tab) {
  for (int r = tid; r < s.table_rows(); r += nthreads)
    tab[r] = table[static_cast<int64_t>(r) * s.heads + h];
}

// ---- forward: block (query tile, bh) --------------------------------------------------------
struct ForwardLayout {
  float *q, *s, *kv, *tab, *o, *part_max, *part_sum, *inv;
  int floats;
  CN_HD ForwardLayout(const Shape& sh, float* base) {
    const int ld = sh.d + 1;
    Carve c{base};
    q = c.take(kRows * ld);
    s = c.take(kRows * (sh.n + 1));  // whole rows of scores, then of exp(s - max)
    const int k_chunk = kChunk * ld, v_chunk_t = sh.d * (kChunk + 1);
    kv = c.take(k_chunk > v_chunk_t ? k_chunk : v_chunk_t);
    tab = c.take(sh.table_rows());
    o = c.take(kRows * ld);
    part_max = c.take(kRows * kParts);
    part_sum = c.take(kRows * kParts);
    inv = c.take(kRows);
    floats = c.floats;
  }
};

template <typename Ops, typename T>
CN_HD void forward_block(const Shape& s, const Tensors<T>& t, int bh, int row0, int tid, int nt,
                         float* smem) {
  const int n = s.n, d = s.d, ld = d + 1, lds = n + 1, rows = imin(kRows, n - row0);
  const int64_t base = static_cast<int64_t>(bh) * n * d;
  ForwardLayout L(s, smem);
  load_rows(tid, nt, t.q + base, row0, rows, d, s.scale, L.q, ld);
  fill(tid, nt, L.o, kRows * ld, 0.f);
  load_table(tid, nt, s, t.table, bh % s.heads, L.tab);
  Ops::sync();
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int cn = imin(kChunk, n - c0);
    load_rows(tid, nt, t.k + base, c0, cn, d, 1.f, L.kv, ld);
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, cn, d, L.q, ld, L.kv, ld, [&](int i, int j, float acc) {
      L.s[i * lds + c0 + j] = acc + L.tab[s.offset(row0 + i, c0 + j)];
    });
    Ops::sync();
  }
  // Softmax over each row, kParts items a row: maxima, then exp and sums, then lse.
  for (int e = tid; e < rows * kParts; e += nt) {
    const int i = e / kParts, part = e % kParts;
    float m = -INFINITY;
    for (int j = part; j < n; j += kParts) m = fmaxf(m, L.s[i * lds + j]);
    L.part_max[e] = m;
  }
  Ops::sync();
  for (int e = tid; e < rows * kParts; e += nt) {
    const int i = e / kParts, part = e % kParts;
    float m = -INFINITY;
    for (int p = 0; p < kParts; ++p) m = fmaxf(m, L.part_max[i * kParts + p]);
    float sum = 0.f;
    for (int j = part; j < n; j += kParts) {
      const float x = expf(L.s[i * lds + j] - m);
      L.s[i * lds + j] = x;
      sum += x;
    }
    L.part_sum[e] = sum;
  }
  Ops::sync();
  for (int i = tid; i < rows; i += nt) {
    float m = -INFINITY, sum = 0.f;
    for (int p = 0; p < kParts; ++p) m = fmaxf(m, L.part_max[i * kParts + p]);
    for (int p = 0; p < kParts; ++p) sum += L.part_sum[i * kParts + p];
    L.inv[i] = 1.f / sum;
    t.lse[static_cast<int64_t>(bh) * n + row0 + i] = m + logf(sum);
  }
  Ops::sync();
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int cn = imin(kChunk, n - c0);
    load_rows_t(tid, nt, t.v + base, c0, cn, d, 1.f, L.kv, kChunk + 1);
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, d, cn, L.s + c0, lds, L.kv, kChunk + 1,
                  [&](int i, int x, float acc) { L.o[i * ld + x] += acc; });
    Ops::sync();
  }
  for (int e = tid; e < rows * d; e += nt) {
    const int i = e / d, x = e % d;
    t.o[base + static_cast<int64_t>(row0 + i) * d + x] = T(L.o[i * ld + x] * L.inv[i]);
  }
}

// ---- backward for dq and the table: block (query tile, bh) ----------------------------------
struct BackwardQLayout {
  float *q, *dout, *s, *k, *v, *kt, *dq, *tab, *dtab, *lse, *delta;
  int floats;
  CN_HD BackwardQLayout(const Shape& sh, float* base) {
    const int ld = sh.d + 1;
    Carve c{base};
    q = c.take(kRows * ld);
    dout = c.take(kRows * ld);
    s = c.take(kRows * (kChunk + 1));
    k = c.take(kChunk * ld);
    v = c.take(kChunk * ld);
    kt = c.take(sh.d * (kChunk + 1));
    dq = c.take(kRows * ld);
    tab = c.take(sh.table_rows());
    dtab = c.take(sh.table_rows());
    lse = c.take(kRows);
    delta = c.take(kRows);
    floats = c.floats;
  }
};

template <typename Ops, typename T>
CN_HD void backward_q_block(const Shape& s, const Tensors<T>& t, int bh, int row0, int tid, int nt,
                            float* smem) {
  const int n = s.n, d = s.d, ld = d + 1, ldc = kChunk + 1, rows = imin(kRows, n - row0);
  const int64_t base = static_cast<int64_t>(bh) * n * d, rbase = static_cast<int64_t>(bh) * n;
  const int h = bh % s.heads;
  BackwardQLayout L(s, smem);
  load_rows(tid, nt, t.q + base, row0, rows, d, s.scale, L.q, ld);
  load_rows(tid, nt, t.dout + base, row0, rows, d, 1.f, L.dout, ld);
  fill(tid, nt, L.dq, kRows * ld, 0.f);
  fill(tid, nt, L.dtab, s.table_rows(), 0.f);
  load_table(tid, nt, s, t.table, h, L.tab);
  for (int i = tid; i < rows; i += nt) {
    float acc = 0.f;
    for (int x = 0; x < d; ++x)
      acc += to_f(t.dout[base + static_cast<int64_t>(row0 + i) * d + x]) *
             to_f(t.out[base + static_cast<int64_t>(row0 + i) * d + x]);
    L.delta[i] = acc;
    t.delta[rbase + row0 + i] = acc;
    L.lse[i] = t.lse[rbase + row0 + i];
  }
  Ops::sync();
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int cn = imin(kChunk, n - c0);
    load_rows(tid, nt, t.k + base, c0, cn, d, 1.f, L.k, ld);
    load_rows(tid, nt, t.v + base, c0, cn, d, 1.f, L.v, ld);
    load_rows_t(tid, nt, t.k + base, c0, cn, d, 1.f, L.kt, ldc);
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, cn, d, L.q, ld, L.k, ld, [&](int i, int j, float acc) {
      L.s[i * ldc + j] = expf(acc + L.tab[s.offset(row0 + i, c0 + j)] - L.lse[i]);
    });
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, cn, d, L.dout, ld, L.v, ld, [&](int i, int j, float acc) {
      const float ds = L.s[i * ldc + j] * (acc - L.delta[i]);
      L.s[i * ldc + j] = ds;
      Ops::add(&L.dtab[s.offset(row0 + i, c0 + j)], ds);
    });
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, d, cn, L.s, ldc, L.kt, ldc,
                  [&](int i, int x, float acc) { L.dq[i * ld + x] += acc; });
    Ops::sync();
  }
  for (int e = tid; e < rows * d; e += nt) {
    const int i = e / d, x = e % d;
    t.dq[base + static_cast<int64_t>(row0 + i) * d + x] = T(L.dq[i * ld + x] * s.scale);
  }
  for (int r = tid; r < s.table_rows(); r += nt)
    if (L.dtab[r] != 0.f) Ops::add(&t.dtable[static_cast<int64_t>(r) * s.heads + h], L.dtab[r]);
}

// ---- backward for dk and dv: block (key tile, bh); after backward_q (it reads delta) ---------
struct BackwardKvLayout {
  float *k, *v, *q, *dout, *qt, *doutt, *st, *dk, *dv, *tab, *lse, *delta;
  int floats;
  CN_HD BackwardKvLayout(const Shape& sh, float* base) {
    const int ld = sh.d + 1;
    Carve c{base};
    k = c.take(kRows * ld);
    v = c.take(kRows * ld);
    q = c.take(kChunk * ld);
    dout = c.take(kChunk * ld);
    qt = c.take(sh.d * (kChunk + 1));
    doutt = c.take(sh.d * (kChunk + 1));
    st = c.take(kRows * (kChunk + 1));
    dk = c.take(kRows * ld);
    dv = c.take(kRows * ld);
    tab = c.take(sh.table_rows());
    lse = c.take(kChunk);
    delta = c.take(kChunk);
    floats = c.floats;
  }
};

template <typename Ops, typename T>
CN_HD void backward_kv_block(const Shape& s, const Tensors<T>& t, int bh, int row0, int tid, int nt,
                             float* smem) {
  const int n = s.n, d = s.d, ld = d + 1, ldc = kChunk + 1, rows = imin(kRows, n - row0);
  const int64_t base = static_cast<int64_t>(bh) * n * d, rbase = static_cast<int64_t>(bh) * n;
  BackwardKvLayout L(s, smem);
  load_rows(tid, nt, t.k + base, row0, rows, d, 1.f, L.k, ld);
  load_rows(tid, nt, t.v + base, row0, rows, d, 1.f, L.v, ld);
  fill(tid, nt, L.dk, kRows * ld, 0.f);
  fill(tid, nt, L.dv, kRows * ld, 0.f);
  load_table(tid, nt, s, t.table, bh % s.heads, L.tab);
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int cn = imin(kChunk, n - c0);
    load_rows(tid, nt, t.q + base, c0, cn, d, s.scale, L.q, ld);
    load_rows(tid, nt, t.dout + base, c0, cn, d, 1.f, L.dout, ld);
    load_rows_t(tid, nt, t.q + base, c0, cn, d, s.scale, L.qt, ldc);
    load_rows_t(tid, nt, t.dout + base, c0, cn, d, 1.f, L.doutt, ldc);
    for (int i = tid; i < cn; i += nt) {
      L.lse[i] = t.lse[rbase + c0 + i];
      L.delta[i] = t.delta[rbase + c0 + i];
    }
    Ops::sync();
    // pᵀ: row j (this block's key), column i (a query of the chunk).
    gemm_nt<4, 2>(tid, nt, rows, cn, d, L.k, ld, L.q, ld, [&](int j, int i, float acc) {
      L.st[j * ldc + i] = expf(acc + L.tab[s.offset(c0 + i, row0 + j)] - L.lse[i]);
    });
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, d, cn, L.st, ldc, L.doutt, ldc,
                  [&](int j, int x, float acc) { L.dv[j * ld + x] += acc; });
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, cn, d, L.v, ld, L.dout, ld,
                  [&](int j, int i, float acc) { L.st[j * ldc + i] *= acc - L.delta[i]; });
    Ops::sync();
    gemm_nt<4, 2>(tid, nt, rows, d, cn, L.st, ldc, L.qt, ldc,
                  [&](int j, int x, float acc) { L.dk[j * ld + x] += acc; });
    Ops::sync();
  }
  for (int e = tid; e < rows * d; e += nt) {
    const int j = e / d, x = e % d;
    const int64_t at = base + static_cast<int64_t>(row0 + j) * d + x;
    t.dk[at] = T(L.dk[j * ld + x]);
    t.dv[at] = T(L.dv[j * ld + x]);
  }
}

// Shared memory a block of each kind needs, in bytes.
inline int64_t forward_smem_bytes(const Shape& s) {
  return static_cast<int64_t>(ForwardLayout(s, nullptr).floats) * 4;
}
inline int64_t backward_q_smem_bytes(const Shape& s) {
  return static_cast<int64_t>(BackwardQLayout(s, nullptr).floats) * 4;
}
inline int64_t backward_kv_smem_bytes(const Shape& s) {
  return static_cast<int64_t>(BackwardKvLayout(s, nullptr).floats) * 4;
}

}  // namespace coatnet::cuda::relpos
