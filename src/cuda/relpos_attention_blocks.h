// The thread blocks of the fused relative-position attention (relpos_attention.h), written once
// for two executors: the CUDA kernels (relpos_attention.cu: 4 warps a block, tensor-core tiles
// through WMMA for bfloat16 and float16) and a serial CPU emulation (relpos_attention_emulated.cpp)
// that the tests run without a GPU. Each block is a sequence of phases; a phase is a loop over
// the warps a thread serves and, inside, over the lanes it serves (on the GPU: its own warp and
// lane; in the emulation: all of them, in order), with Ops::sync() (the block) or
// Ops::syncwarp() between phases. The matrix products are Ops::mma on 16-row tiles in
// shared memory (a WMMA tile product on the GPU, a loop in the emulation); everything else is
// float32 in shared memory, so both executors compute the same algorithm.
//
// Flash-attention tiling with the relative-position table gathered in the kernel: per
// (batch·head) and a tile of kRows queries (forward, backward for dq and the table) or keys
// (backward for dk and dv), keys or queries are visited kChunk at a time, each warp owning 16 of
// the tile's rows. With s_ij = scale·q_i·k_j + table[offset(i, j), head]:
//   forward   o_i = Σ_j softmax_j(s_ij) v_j (online softmax: running max m_i and sum l_i),
//             lse_i = m_i + log l_i kept for the backward
//   backward  delta_i = dout_i·o_i,  p_ij = exp(s_ij − lse_i),  ds_ij = p_ij (dout_i·v_j − delta_i)
//             dq = scale·ds·k,  dk = scale·dsᵀ·q,  dv = pᵀ·dout,  dtable[offset(i, j)] += ds_ij
// The table's gradient is summed per warp in shared memory in a fixed order (lanes take 32
// distinct keys of one query row at a time, so no two touch one offset), then per block into
// its own row of a partial buffer that one more pass adds up in a fixed order: deterministic,
// no atomics. Nothing of size N×N leaves a block.
//
// q, k and v are read where the qkv 1x1 convolution wrote them: its channels-last output
// (B, H·W, heads·3·D), head h's q at channel h·3D, k at h·3D + D, v at h·3D + 2D (timm's
// layout). Their gradients are written into one tensor of that layout, which is what the
// convolution's backward takes; the output is (B, H·W, heads·D), the projection's NHWC input.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda/elements.h"

namespace coatnet::cuda::relpos {

constexpr int kWarps = 4;   // a block's warps
constexpr int kLanes = 32;  // a warp's lanes
constexpr int kThreads = kWarps * kLanes;
constexpr int kTile = 16;              // rows a warp owns (one WMMA tile high)
constexpr int kRows = kWarps * kTile;  // queries (or keys) a block owns
constexpr int kChunk = 64;             // keys (or queries) a pass visits
constexpr int kLdScores = kChunk + 4;  // float32 score rows (a multiple of 4 for WMMA)
constexpr int kLdProbs = kChunk + 8;   // 16-bit probability rows (a multiple of 8)

CN_HD int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}
// A row past the last token reads the last token's position (its results are not stored).
CN_HD int min_row(int i, int n) {
  return i < n ? i : n - 1;
}

struct Shape {
  int batch, heads, n, gh, gw;  // n = gh·gw tokens
  float scale;                  // 1/sqrt(D)
  CN_HD int table_rows() const { return (2 * gh - 1) * (2 * gw - 1); }
  CN_HD int tiles() const { return ceil_div(n, kRows); }
  // offset(i, j) = pos(i) − pos(j) + centre: model::relative_position_index's formula,
  // (yi − yj + gh − 1)(2gw − 1) + (xi − xj + gw − 1), split into a per-token part.
  CN_HD int pos(int i) const { return (i / gw) * (2 * gw - 1) + i % gw; }
  CN_HD int centre() const { return (gh - 1) * (2 * gw - 1) + gw - 1; }
};

template <typename T>
struct Args {
  const T* qkv;        // (B, n, heads·3·D)
  const float* table;  // (table rows, heads)
  T* out;              // (B, n, heads·D): forward's output
  float* lse;          // (B·heads, n): written forward, read backward
  const T* dout;       // (B, n, heads·D)
  float* delta;        // (B·heads, n): written by backward_dq, read by backward_dkv
  T* dqkv;             // qkv's layout: dq by backward_dq, dk and dv by backward_dkv
  float* dtable_part;  // (B·heads·tiles, table rows): each backward_dq block's table gradient
};

// Which warps and lanes a thread runs: on the GPU its own (warp = tid / 32, lane = tid % 32); in
// the emulation (one thread a block) all of them, one after another.
struct Team {
  int tid, threads;
  CN_HD bool serial() const { return threads == 1; }
  CN_HD int warp0() const { return serial() ? 0 : tid / kLanes; }
  CN_HD int warp_step() const { return serial() ? 1 : kWarps; }
  CN_HD int lane0() const { return serial() ? 0 : tid % kLanes; }
  CN_HD int lane_step() const { return serial() ? 1 : kLanes; }
};

// Row offsets into qkv, out and dout for token i of (batch·head) bh.
struct Rows {
  int64_t qkv, out;  // q of token 0 of head h; out/dout of token 0 of head h
  int64_t qkv_stride, out_stride;
  template <int D>
  CN_HD static Rows of(const Shape& s, int bh) {
    const int64_t b = bh / s.heads, h = bh % s.heads;
    Rows r;
    r.qkv_stride = static_cast<int64_t>(s.heads) * 3 * D;
    r.out_stride = static_cast<int64_t>(s.heads) * D;
    r.qkv = b * s.n * r.qkv_stride + h * 3 * D;
    r.out = b * s.n * r.out_stride + h * D;
    return r;
  }
};

// Hands out 32-byte aligned pieces of a block's shared memory (WMMA's pointer alignment);
// `bytes` is what a layout needs.
struct Carve {
  char* base;
  int64_t bytes = 0;
  template <typename U>
  CN_HD U* take(int64_t count) {
    bytes = (bytes + 31) / 32 * 32;
    U* r = base ? reinterpret_cast<U*>(base + bytes) : nullptr;
    bytes += count * static_cast<int64_t>(sizeof(U));
    return r;
  }
};

struct alignas(16) Pack16 {
  uint32_t w[4];
};

// `rows` rows of D elements from src (row r at src + r·stride) into dst (row stride ld), 16 bytes
// at a time; rows at or past `valid` are zeros.
template <typename T, int D>
CN_HD void load_rows(const Team& tm, const T* src, int64_t stride, int rows, int valid, T* dst,
                     int ld) {
  constexpr int kPacks = D * static_cast<int>(sizeof(T)) / 16;
  constexpr int kPer = 16 / static_cast<int>(sizeof(T));
  for (int e = tm.tid; e < rows * kPacks; e += tm.threads) {
    const int r = e / kPacks, p = e % kPacks;
    Pack16 v{};
    if (r < valid) v = *reinterpret_cast<const Pack16*>(src + r * stride + p * kPer);
    *reinterpret_cast<Pack16*>(dst + r * ld + p * kPer) = v;
  }
}

// Row strides in shared memory: 16-bit rows of D elements, float32 accumulator rows.
constexpr int ld_rows(int d) {
  return d + 8;  // 16-bit rows stay a multiple of 16 bytes; banks shift by 4 a row
}
constexpr int ld_acc(int d) {
  return d + 4;
}

// `count` tokens from `from` of qkv's part (0: q, 1: k, 2: v) for one head, zeros past n.
template <typename T, int D>
CN_HD void load_part(const Team& tm, const Shape& s, const T* qkv, const Rows& R, int part,
                     int from, int count, T* dst) {
  load_rows<T, D>(tm, qkv + R.qkv + part * D + from * R.qkv_stride, R.qkv_stride, count, s.n - from,
                  dst, ld_rows(D));
}

// The head's column of the table, and pos(j) of every token.
CN_HD void load_geometry(const Team& tm, const Shape& s, const float* table, int h, float* tab,
                         int* pos) {
  for (int r = tm.tid; r < s.table_rows(); r += tm.threads) tab[r] = table[r * s.heads + h];
  for (int j = tm.tid; j < s.n; j += tm.threads) pos[j] = s.pos(j);
}

// The column a lane visits k-th (k < 32) of a 64-wide score tile: lanes l and l + 16 share row
// l % 16 and take one half each, rotated so that the 32 lanes hit 32 different banks.
CN_HD int lane_row(int lane) {
  return lane % kTile;
}
CN_HD int lane_col(int lane, int k) {
  const int r = lane % kTile, half = lane / kTile;
  return half * 32 + ((k + r + 16 * half) & 31);
}

// C[16 × cols] (+)= A[16 × k] · B[cols × k]ᵀ (nt) or A · B[k × cols] (nn), float32 sums, by the
// lanes lane0, lane0 + step, ...: the emulation's products, and the GPU's without tensor cores.
template <bool kTransposedB, typename T>
CN_HD void scalar_mma(int lane0, int step, float* C, int ldc, const T* A, int lda, const T* B,
                      int ldb, int cols, int k, bool accumulate) {
  for (int e = lane0; e < kTile * cols; e += step) {
    const int r = e / cols, c = e % cols;
    float sum = accumulate ? C[r * ldc + c] : 0.f;
    for (int x = 0; x < k; ++x)
      sum += to_float(A[r * lda + x]) * to_float(kTransposedB ? B[c * ldb + x] : B[x * ldb + c]);
    C[r * ldc + c] = sum;
  }
}

// ---- shared memory ------------------------------------------------------------------------
// A warp's scratch: float32 scores (and their gradients), 16-bit probabilities, float32
// accumulators of its 16 output rows, per-row statistics and the lanes' partial reductions.
template <typename T, int D>
struct WarpScratch {
  float *s, *dp, *acc, *acc2, *row_a, *row_b, *row_c, *part, *tab;
  T *p, *p2;
  CN_HD void take(Carve& c, bool second_scores, bool second_probs, bool second_acc,
                  int table_rows) {
    s = c.take<float>(kTile * kLdScores);
    dp = second_scores ? c.take<float>(kTile * kLdScores) : nullptr;
    p = c.take<T>(kTile * kLdProbs);
    p2 = second_probs ? c.take<T>(kTile * kLdProbs) : nullptr;
    acc = c.take<float>(kTile * (D + 4));
    acc2 = second_acc ? c.take<float>(kTile * (D + 4)) : nullptr;
    row_a = c.take<float>(kTile);
    row_b = c.take<float>(kTile);
    row_c = c.take<float>(kTile);
    part = c.take<float>(2 * kLanes);
    tab = table_rows ? c.take<float>(table_rows) : nullptr;
  }
  // The same pieces `bytes` further on: the next warp's, when every warp's are alike.
  CN_HD WarpScratch shifted(int64_t bytes) const {
    WarpScratch w = *this;
    auto move = [bytes](auto*& ptr) {
      if (ptr)
        ptr = reinterpret_cast<std::remove_reference_t<decltype(ptr)>>(
            reinterpret_cast<char*>(ptr) + bytes);
    };
    move(w.s), move(w.dp), move(w.acc), move(w.acc2), move(w.row_a), move(w.row_b);
    move(w.row_c), move(w.part), move(w.tab), move(w.p), move(w.p2);
    return w;
  }
};

// The block's tiles: its own kRows rows of one or two inputs (a, b), a chunk of two others (c, d),
// the head's table, pos(), per-chunk row statistics, and each warp's scratch.
template <typename T, int D>
struct Layout {
  T *a, *b, *c, *d;
  float *tab, *chunk_a, *chunk_b;
  int* pos;
  WarpScratch<T, D> warp0;  // warp w's scratch: warp0's, w·warp_bytes further on
  int64_t warp_bytes, bytes;
  CN_HD Layout(const Shape& s, char* base, bool own_b, bool second_scores, bool second_probs,
               bool second_acc, bool warp_tables) {
    Carve cv{base};
    a = cv.take<T>(kRows * ld_rows(D));
    b = own_b ? cv.take<T>(kRows * ld_rows(D)) : nullptr;
    c = cv.take<T>(kChunk * ld_rows(D));
    d = cv.take<T>(kChunk * ld_rows(D));
    tab = cv.take<float>(s.table_rows());
    chunk_a = cv.take<float>(kChunk);
    chunk_b = cv.take<float>(kChunk);
    pos = cv.take<int>(s.n);
    const int64_t start = (cv.bytes + 31) / 32 * 32;
    warp0.take(cv, second_scores, second_probs, second_acc, warp_tables ? s.table_rows() : 0);
    warp_bytes = (cv.bytes - start + 31) / 32 * 32;
    bytes = start + kWarps * warp_bytes;
  }
  // Computed, not indexed: an array of kWarps scratches would live in local memory on the GPU.
  CN_HD WarpScratch<T, D> warp(int w) const { return warp0.shifted(w * warp_bytes); }
};

template <typename T, int D>
CN_HD Layout<T, D> forward_layout(const Shape& s, char* base) {
  return Layout<T, D>(s, base, false, false, false, false, false);
}
template <typename T, int D>
CN_HD Layout<T, D> backward_dq_layout(const Shape& s, char* base) {
  return Layout<T, D>(s, base, true, true, false, false, true);
}
template <typename T, int D>
CN_HD Layout<T, D> backward_dkv_layout(const Shape& s, char* base) {
  return Layout<T, D>(s, base, true, true, true, true, false);
}

// ---- what the three blocks share --------------------------------------------------------
// C[16 × cols] (+)= A · B[cols × k]ᵀ (kTransposedB) or A · B[k × cols], through Ops.
template <typename Ops, bool kTransposedB, typename T>
CN_HD void mma(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int cols, int k,
               bool accumulate) {
  Ops::template mma<kTransposedB, T>(C, ldc, A, lda, B, ldb, cols, k, accumulate);
}

// Warp w's scores W.s = a_w · cᵀ and W.dp = b_w · dᵀ over the chunk in c and d (b, d: backward).
template <typename Ops, typename T, int D>
CN_HD void chunk_products(const Layout<T, D>& L, const WarpScratch<T, D>& W, int w, bool both) {
  const int off = w * kTile * ld_rows(D);
  mma<Ops, true>(W.s, kLdScores, L.a + off, ld_rows(D), L.c, ld_rows(D), kChunk, D, false);
  if (both)
    mma<Ops, true>(W.dp, kLdScores, L.b + off, ld_rows(D), L.d, ld_rows(D), kChunk, D, false);
  Ops::syncwarp();
}

// For every chunk of kChunk keys (or queries): the block loads it (load(c0)), then each warp the
// thread serves runs chunk(w, warp's first row, c0).
template <typename Ops, typename Load, typename Chunk>
CN_HD void for_chunks(const Shape& s, const Team& tm, int row0, Load&& load, Chunk&& chunk) {
  for (int c0 = 0; c0 < s.n; c0 += kChunk) {
    Ops::sync();  // the previous chunk's tiles are no longer read
    load(c0);
    Ops::sync();
    for (int w = tm.warp0(); w < kWarps; w += tm.warp_step()) chunk(w, row0 + w * kTile, c0);
  }
}

// f(w, warp's first row, its scratch) for each warp the thread serves.
template <typename T, int D, typename F>
CN_HD void for_warps(const Team& tm, const Layout<T, D>& L, int row0, F&& f) {
  for (int w = tm.warp0(); w < kWarps; w += tm.warp_step()) f(w, row0 + w * kTile, L.warp(w));
}

// The warp's accumulated rows r0.. (those before n), times factor(r), into dst + token·stride.
template <typename T, int D, typename Factor>
CN_HD void store_rows(const Team& tm, const float* acc, int r0, int n, T* dst, int64_t stride,
                      Factor&& factor) {
  for (int e = tm.lane0(); e < kTile * D; e += tm.lane_step()) {
    const int r = e / D, x = e % D;
    if (r0 + r < n) from_float(acc[r * ld_acc(D) + x] * factor(r), &dst[(r0 + r) * stride + x]);
  }
}

template <typename U>
CN_HD void fill_lanes(const Team& tm, U* p, int count, U v) {
  for (int e = tm.lane0(); e < count; e += tm.lane_step()) p[e] = v;
}

// ---- forward: block (query tile, bh) ------------------------------------------------------
template <typename Ops, typename T, int D>
CN_HD void forward_chunk(const Shape& s, const Layout<T, D>& L, int w, int row0, int c0,
                         const Team& tm) {
  const WarpScratch<T, D> W = L.warp(w);
  const int centre = s.centre();
  chunk_products<Ops>(L, W, w, false);
  // Biased, masked scores in place, and each half row's maximum.
  for (int l = tm.lane0(); l < kLanes; l += tm.lane_step()) {
    const int r = lane_row(l), pi = L.pos[min_row(row0 + r, s.n)];
    float mx = -INFINITY;
    for (int k = 0; k < 32; ++k) {
      const int c = lane_col(l, k), j = c0 + c;
      const float v =
          j < s.n ? W.s[r * kLdScores + c] * s.scale + L.tab[pi - L.pos[j] + centre] : -INFINITY;
      W.s[r * kLdScores + c] = v;
      mx = fmaxf(mx, v);
    }
    W.part[l] = mx;
  }
  Ops::syncwarp();
  // p = exp(s − m_new), rounded to T as the product with v will see it; half-row sums of that.
  for (int l = tm.lane0(); l < kLanes; l += tm.lane_step()) {
    const int r = lane_row(l);
    const float m = fmaxf(W.row_a[r], fmaxf(W.part[r], W.part[r + kTile]));
    float sum = 0.f;
    for (int k = 0; k < 32; ++k) {
      const int c = lane_col(l, k);
      T p;
      from_float(expf(W.s[r * kLdScores + c] - m), &p);
      W.p[r * kLdProbs + c] = p;
      sum += to_float(p);
    }
    W.part[kLanes + l] = sum;
  }
  Ops::syncwarp();
  // Running maximum (row_a) and sum (row_b); row_c: what the accumulated rows are scaled by.
  for (int l = tm.lane0(); l < kTile; l += tm.lane_step()) {
    const float m = fmaxf(W.row_a[l], fmaxf(W.part[l], W.part[l + kTile]));
    const float alpha = expf(W.row_a[l] - m);  // 0 on the first chunk (−inf − m)
    W.row_b[l] = W.row_b[l] * alpha + W.part[kLanes + l] + W.part[kLanes + l + kTile];
    W.row_a[l] = m;
    W.row_c[l] = alpha;
  }
  Ops::syncwarp();
  for (int e = tm.lane0(); e < kTile * D; e += tm.lane_step())
    W.acc[(e / D) * ld_acc(D) + e % D] *= W.row_c[e / D];
  Ops::syncwarp();
  mma<Ops, false>(W.acc, ld_acc(D), W.p, kLdProbs, L.d, ld_rows(D), D, kChunk, true);
  Ops::syncwarp();
}

template <typename Ops, typename T, int D>
CN_HD void forward_block(const Shape& s, const Args<T>& t, int bh, int tile, const Team& tm,
                         char* smem) {
  const Layout<T, D> L = forward_layout<T, D>(s, smem);
  const Rows R = Rows::of<D>(s, bh);
  const int row0 = tile * kRows;
  load_part<T, D>(tm, s, t.qkv, R, 0, row0, kRows, L.a);
  load_geometry(tm, s, t.table, bh % s.heads, L.tab, L.pos);
  for_warps(tm, L, row0, [&](int, int, const WarpScratch<T, D>& W) {
    fill_lanes(tm, W.acc, kTile * ld_acc(D), 0.f);
    fill_lanes(tm, W.row_a, kTile, -INFINITY);
    fill_lanes(tm, W.row_b, kTile, 0.f);
  });
  for_chunks<Ops>(
      s, tm, row0,
      [&](int c0) {
        load_part<T, D>(tm, s, t.qkv, R, 1, c0, kChunk, L.c);
        load_part<T, D>(tm, s, t.qkv, R, 2, c0, kChunk, L.d);
      },
      [&](int w, int r0, int c0) { forward_chunk<Ops, T, D>(s, L, w, r0, c0, tm); });
  for_warps(tm, L, row0, [&](int, int r0, const WarpScratch<T, D>& W) {
    store_rows<T, D>(tm, W.acc, r0, s.n, t.out + R.out, R.out_stride,
                     [&](int r) { return 1.f / W.row_b[r]; });
    for (int l = tm.lane0(); l < kTile; l += tm.lane_step())
      if (r0 + l < s.n)
        t.lse[static_cast<int64_t>(bh) * s.n + r0 + l] = W.row_a[l] + logf(W.row_b[l]);
  });
}

// ---- backward for dq and the table: block (query tile, bh) ----------------------------------
template <typename Ops, typename T, int D>
CN_HD void backward_dq_chunk(const Shape& s, const Layout<T, D>& L, int w, int row0, int c0,
                             const Team& tm) {
  const WarpScratch<T, D> W = L.warp(w);
  const int centre = s.centre();
  chunk_products<Ops>(L, W, w, true);
  // ds in float32 (kept in W.s for the table) and rounded to T (for ds·k).
  for (int l = tm.lane0(); l < kLanes; l += tm.lane_step()) {
    const int r = lane_row(l), i = row0 + r, pi = L.pos[min_row(i, s.n)];
    for (int k = 0; k < 32; ++k) {
      const int c = lane_col(l, k), j = c0 + c;
      float ds = 0.f;
      if (i < s.n && j < s.n) {
        const float p =
            expf(W.s[r * kLdScores + c] * s.scale + L.tab[pi - L.pos[j] + centre] - W.row_a[r]);
        ds = p * (W.dp[r * kLdScores + c] - W.row_b[r]);
      }
      W.s[r * kLdScores + c] = ds;
      from_float(ds, &W.p[r * kLdProbs + c]);
    }
  }
  Ops::syncwarp();
  // The table: one query row, 32 consecutive keys at a time, so no two lanes share an offset.
  for (int r = 0; r < kTile && row0 + r < s.n; ++r) {
    const int pi = L.pos[row0 + r];
    for (int half = 0; half < 2; ++half) {
      for (int l = tm.lane0(); l < kLanes; l += tm.lane_step()) {
        const int c = half * 32 + l, j = c0 + c;
        if (j < s.n) W.tab[pi - L.pos[j] + centre] += W.s[r * kLdScores + c];
      }
      Ops::syncwarp();
    }
  }
  mma<Ops, false>(W.acc, ld_acc(D), W.p, kLdProbs, L.c, ld_rows(D), D, kChunk, true);
  Ops::syncwarp();
}

template <typename Ops, typename T, int D>
CN_HD void backward_dq_block(const Shape& s, const Args<T>& t, int bh, int tile, const Team& tm,
                             char* smem) {
  const Layout<T, D> L = backward_dq_layout<T, D>(s, smem);
  const Rows R = Rows::of<D>(s, bh);
  const int row0 = tile * kRows, valid = s.n - row0;
  const int64_t stats = static_cast<int64_t>(bh) * s.n;
  load_part<T, D>(tm, s, t.qkv, R, 0, row0, kRows, L.a);
  load_rows<T, D>(tm, t.dout + R.out + row0 * R.out_stride, R.out_stride, kRows, valid, L.b,
                  ld_rows(D));
  load_geometry(tm, s, t.table, bh % s.heads, L.tab, L.pos);
  for_warps(tm, L, row0, [&](int, int r0, const WarpScratch<T, D>& W) {
    fill_lanes(tm, W.acc, kTile * ld_acc(D), 0.f);
    fill_lanes(tm, W.tab, s.table_rows(), 0.f);
    // row_a: lse, row_b: delta = dout·out (float32, from memory).
    for (int l = tm.lane0(); l < kTile; l += tm.lane_step()) {
      const int i = r0 + l;
      float lse = 0.f, delta = 0.f;
      if (i < s.n) {
        lse = t.lse[stats + i];
        for (int x = 0; x < D; ++x)
          delta += to_float(t.dout[R.out + i * R.out_stride + x]) *
                   to_float(t.out[R.out + i * R.out_stride + x]);
        t.delta[stats + i] = delta;
      }
      W.row_a[l] = lse;
      W.row_b[l] = delta;
    }
  });
  for_chunks<Ops>(
      s, tm, row0,
      [&](int c0) {
        load_part<T, D>(tm, s, t.qkv, R, 1, c0, kChunk, L.c);
        load_part<T, D>(tm, s, t.qkv, R, 2, c0, kChunk, L.d);
      },
      [&](int w, int r0, int c0) { backward_dq_chunk<Ops, T, D>(s, L, w, r0, c0, tm); });
  for_warps(tm, L, row0, [&](int, int r0, const WarpScratch<T, D>& W) {
    store_rows<T, D>(tm, W.acc, r0, s.n, t.dqkv + R.qkv, R.qkv_stride,
                     [&](int) { return s.scale; });
  });
  Ops::sync();
  float* part = t.dtable_part + (static_cast<int64_t>(bh) * s.tiles() + tile) * s.table_rows();
  for (int e = tm.tid; e < s.table_rows(); e += tm.threads) {
    float sum = 0.f;
    for (int w = 0; w < kWarps; ++w) sum += L.warp(w).tab[e];
    part[e] = sum;
  }
}

// ---- backward for dk and dv: block (key tile, bh), after backward_dq (it reads delta) -------
template <typename Ops, typename T, int D>
CN_HD void backward_dkv_chunk(const Shape& s, const Layout<T, D>& L, int w, int row0, int c0,
                              const Team& tm) {
  const WarpScratch<T, D> W = L.warp(w);
  const int centre = s.centre();
  // Transposed: row r is key row0 + r, column c query c0 + c.
  chunk_products<Ops>(L, W, w, true);
  for (int l = tm.lane0(); l < kLanes; l += tm.lane_step()) {
    const int r = lane_row(l), j = row0 + r, pj = L.pos[min_row(j, s.n)];
    for (int k = 0; k < 32; ++k) {
      const int c = lane_col(l, k), i = c0 + c;
      float p = 0.f, ds = 0.f;
      if (i < s.n && j < s.n) {
        p = expf(W.s[r * kLdScores + c] * s.scale + L.tab[L.pos[i] - pj + centre] - L.chunk_a[c]);
        ds = p * (W.dp[r * kLdScores + c] - L.chunk_b[c]);
      }
      from_float(p, &W.p[r * kLdProbs + c]);
      from_float(ds, &W.p2[r * kLdProbs + c]);
    }
  }
  Ops::syncwarp();
  mma<Ops, false>(W.acc2, ld_acc(D), W.p, kLdProbs, L.d, ld_rows(D), D, kChunk, true);
  mma<Ops, false>(W.acc, ld_acc(D), W.p2, kLdProbs, L.c, ld_rows(D), D, kChunk, true);
  Ops::syncwarp();
}

template <typename Ops, typename T, int D>
CN_HD void backward_dkv_block(const Shape& s, const Args<T>& t, int bh, int tile, const Team& tm,
                              char* smem) {
  const Layout<T, D> L = backward_dkv_layout<T, D>(s, smem);
  const Rows R = Rows::of<D>(s, bh);
  const int row0 = tile * kRows;
  const int64_t stats = static_cast<int64_t>(bh) * s.n;
  load_part<T, D>(tm, s, t.qkv, R, 1, row0, kRows, L.a);
  load_part<T, D>(tm, s, t.qkv, R, 2, row0, kRows, L.b);
  load_geometry(tm, s, t.table, bh % s.heads, L.tab, L.pos);
  for_warps(tm, L, row0, [&](int, int, const WarpScratch<T, D>& W) {
    fill_lanes(tm, W.acc, kTile * ld_acc(D), 0.f);
    fill_lanes(tm, W.acc2, kTile * ld_acc(D), 0.f);
  });
  for_chunks<Ops>(
      s, tm, row0,
      [&](int c0) {
        load_part<T, D>(tm, s, t.qkv, R, 0, c0, kChunk, L.c);
        load_rows<T, D>(tm, t.dout + R.out + c0 * R.out_stride, R.out_stride, kChunk, s.n - c0, L.d,
                        ld_rows(D));
        for (int c = tm.tid; c < kChunk; c += tm.threads) {
          const bool in = c0 + c < s.n;
          L.chunk_a[c] = in ? t.lse[stats + c0 + c] : 0.f;
          L.chunk_b[c] = in ? t.delta[stats + c0 + c] : 0.f;
        }
      },
      [&](int w, int r0, int c0) { backward_dkv_chunk<Ops, T, D>(s, L, w, r0, c0, tm); });
  for_warps(tm, L, row0, [&](int, int r0, const WarpScratch<T, D>& W) {
    store_rows<T, D>(tm, W.acc, r0, s.n, t.dqkv + R.qkv + D, R.qkv_stride,
                     [&](int) { return s.scale; });
    store_rows<T, D>(tm, W.acc2, r0, s.n, t.dqkv + R.qkv + 2 * D, R.qkv_stride,
                     [](int) { return 1.f; });
  });
}

// dtable[r, h] = Σ over the batch and the query tiles of the blocks' partial rows, in order.
CN_HD void reduce_table(const Shape& s, const float* part, float* dtable, int r, int h) {
  float sum = 0.f;
  for (int b = 0; b < s.batch; ++b)
    for (int tile = 0; tile < s.tiles(); ++tile)
      sum +=
          part[((static_cast<int64_t>(b) * s.heads + h) * s.tiles() + tile) * s.table_rows() + r];
  dtable[r * s.heads + h] = sum;
}

}  // namespace coatnet::cuda::relpos
