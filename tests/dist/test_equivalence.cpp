// Data parallelism changes nothing but the order of sums: the gradient a CoAtNet sees after
// GradBuckets' all-reduce at W ranks × B images equals the gradient of one rank's W·B images.
// Compared directly after the all-reduce (an optimizer would blur it: AdamW is nearly blind to
// the scale of a gradient, so a sum-instead-of-mean bug would pass a comparison of weights).
//
// Two references, each computed on every rank alone from the same global batch:
//  - SyncBatchNorm on: one batch of W·B. fp32 sums in another order differ by at most
//    (n − 1)·u·Σ|terms| for a sum of n terms (u = 2⁻²⁴); the longest sums here are the
//    batch-and-space reductions of the first stage's convolutions and SyncBN, n = W·B·16·16, and
//    the gradient norm stands in for Σ|terms|, so the bound is ‖Δ‖ ≤ n·u·‖g‖.
//  - SyncBatchNorm off: the mean of the W gradients that each rank's rows give alone (each
//    rank's BatchNorm sees only its own B). The same arithmetic but for the order of the W-term
//    sum: at W = 2 there is one addition and halving is exact, so the gradients are
//    bit-identical; at W = 3 each element may differ by the rounding of two orders of the sum
//    and a division each: 2(W−1)·u·Σⱼ|gⱼ|/W + 2u·|g|.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>

#include "dist/comm.h"
#include "dist/grad_buckets.h"
#include "dist/partition.h"
#include "dist/sync_bn.h"
#include "dist/test_world.h"
#include "model/coatnet.h"
#include "train/flat_params.h"
#include "train/loss.h"
#include "train/tiny_spec.h"

using namespace coatnet;
using coatnet::test::tiny_spec;

namespace {

constexpr int kPerRank = 4;  // B
constexpr double kUnitRoundoff = 1.0 / (1 << 24);

model::CoAtNet seeded_model() {
  at::manual_seed(17);
  return model::CoAtNet(tiny_spec());
}

// A model with the same weights on every rank and in every call, its parameters flattened as
// the trainer flattens them (the same memory layout: the same arithmetic).
struct Replica {
  model::CoAtNet net;
  std::unique_ptr<train::FlatParams> flat;
  explicit Replica(int shards = 1) : net(seeded_model()) {
    net->train();
    flat = std::make_unique<train::FlatParams>(*net, shards);
  }
  at::Tensor loss(const at::Tensor& x, const at::Tensor& soft) {
    return train::classification_loss(net->forward(x), soft, at::ones({x.size(0)}, at::kBool),
                                      train::LossType::SoftmaxCE);
  }
  // The parameters' gradients in the flat layout (padding zero).
  at::Tensor grads() const {
    at::Tensor g = at::zeros_like(flat->values);
    for (const train::FlatEntry& e : flat->entries)
      if (e.param.grad().defined()) g.narrow(0, e.offset, e.numel).copy_(e.param.grad().flatten());
    return g;
  }
};

struct GlobalBatch {
  at::Tensor images, soft;
  explicit GlobalBatch(int world) {
    at::manual_seed(23);
    images = at::randn({kPerRank * world, 1, 32, 32});
    soft = at::softmax(at::randn({kPerRank * world, 10}) * 3, 1);
  }
  at::Tensor rows(const at::Tensor& t, int part) const {
    return t.narrow(0, part * kPerRank, kPerRank);
  }
};

std::unique_ptr<dist::Comm> mpi_comm() {
  dist::CommOptions o;
  o.timeout_s = 60;
  return dist::make_comm("mpi", test_world(), o, false);
}

// The gradient at W ranks × B: this rank's rows, its buckets all-reduced from autograd hooks.
// With `zero` (ZeRO-1) they are reduce-scattered instead: the range this rank owns (of the flat
// buffer padded to W shards) holds the mean, the rest is undefined (set to NaN here).
at::Tensor data_parallel_gradient(dist::Comm& comm, const GlobalBatch& batch, bool sync_bn,
                                  bool zero = false) {
  Replica r(zero ? comm.size() : 1);
  dist::GradBuckets buckets(r.flat->params(), r.flat->grads, r.flat->offsets(), comm, 16 << 10,
                            64 << 10);
  EXPECT_GE(buckets.buckets().size(), 3u) << "the test wants several buckets";
  const auto part =
      dist::Partition::even(r.flat->numel(), zero ? comm.rank() : 0, zero ? comm.size() : 1);
  at::Tensor owned = at::empty({part.shard});
  if (zero && comm.size() > 1) buckets.scatter_into(owned, part);
  std::optional<dist::SyncBatchNormScope> scope;
  if (sync_bn) scope.emplace(comm);
  buckets.zero();
  buckets.begin_backward(/*sync=*/true);
  r.loss(batch.rows(batch.images, comm.rank()), batch.rows(batch.soft, comm.rank())).backward();
  buckets.finish();
  if (!zero || comm.size() == 1) return r.flat->grads.clone();
  at::Tensor out = at::full_like(r.flat->grads, std::nan(""));
  out.narrow(0, part.begin(), part.shard).copy_(owned);
  return out;
}

double l2(const at::Tensor& t) {
  return t.norm().item<double>();
}

}  // namespace

TEST(GradEquivalence, RanksWithSyncBnEqualOneBatchOfAllTheirImages) {
  auto comm = mpi_comm();
  const int w = comm->size();
  const GlobalBatch batch(w);
  Replica one;
  one.loss(batch.images, batch.soft).backward();
  const at::Tensor ref = one.grads();
  const at::Tensor got = data_parallel_gradient(*comm, batch, /*sync_bn=*/true);

  const double n = static_cast<double>(w) * kPerRank * 16 * 16;  // the longest sum
  const double bound = n * kUnitRoundoff * l2(ref);
  const double diff = l2(got - ref);
  if (comm->rank() == 0)
    std::printf(
        "W=%d x %d vs 1 x %d, SyncBN: |g| %.4e, |dg| %.3e, bound n*u*|g| %.3e (%.1e of it)\n", w,
        kPerRank, w * kPerRank, l2(ref), diff, bound, diff / bound);
  EXPECT_LE(diff, bound) << "the all-reduced gradient is not the gradient of the global batch";
}

namespace {
void expect_mean_of_own_rows(bool zero) {
  auto comm = mpi_comm();
  const int w = comm->size();
  const GlobalBatch batch(w);
  Replica alone;
  at::Tensor sum = at::zeros_like(alone.flat->values), sum_abs = at::zeros_like(sum);
  for (int j = 0; j < w; ++j) {  // rank j's rows, as rank j computes them by itself
    for (const train::FlatEntry& e : alone.flat->entries) e.param.mutable_grad() = at::Tensor();
    alone.loss(batch.rows(batch.images, j), batch.rows(batch.soft, j)).backward();
    const at::Tensor g = alone.grads();
    sum += g;
    sum_abs += g.abs();
  }
  at::Tensor ref = sum / w;
  at::Tensor got = data_parallel_gradient(*comm, batch, /*sync_bn=*/false, zero);
  if (zero) {  // this rank's range of the reference, padded as the sharded buffer is
    const auto part = dist::Partition::even(got.numel(), comm->rank(), w);
    const int64_t pad = got.numel() - ref.numel();
    ref = at::constant_pad_nd(ref, {0, pad}).narrow(0, part.begin(), part.shard);
    sum_abs = at::constant_pad_nd(sum_abs, {0, pad}).narrow(0, part.begin(), part.shard);
    got = got.narrow(0, part.begin(), part.shard);
  }

  // Two orders of W additions, then a division each: 2(W-1)·u·Σ|gⱼ|/W + 2u·|g|.
  const at::Tensor bound =
      2 * (w - 1) * kUnitRoundoff * sum_abs / w + 2 * kUnitRoundoff * ref.abs();
  const at::Tensor diff = (got - ref).abs();
  if (comm->rank() == 0)
    std::printf(
        "W=%d x %d vs the mean of the ranks' own gradients%s: max |dg| %.3e, "
        "elements over the bound: %lld\n",
        w, kPerRank, zero ? " (reduce-scattered, ZeRO-1)" : "", diff.max().item<double>(),
        static_cast<long long>(diff.gt(bound).sum().item<int64_t>()));
  if (w <= 2)  // one addition: the same in any order, and halving is exact
    EXPECT_TRUE(at::equal(got, ref)) << "not bit-identical: max |dg| " << diff.max().item<double>();
  else
    EXPECT_TRUE(diff.le(bound).all().item<bool>())
        << "an element differs by more than the rounding of the sum's order";
}
}  // namespace

TEST(GradEquivalence, RanksWithoutSyncBnAverageTheGradientsOfTheirOwnRows) {
  expect_mean_of_own_rows(/*zero=*/false);
}

// ZeRO-1: each rank's range of the reduce-scattered buckets (buckets cross the ranges' borders)
// holds the same mean, within the same bound.
TEST(GradEquivalence, ReduceScatteredBucketsGiveEachRankItsRangeOfTheMean) {
  expect_mean_of_own_rows(/*zero=*/true);
}
