// ZeRO-1 against the whole update, under real MPI (runs alone and under mpirun -np 2, 3): with
// the same reduced gradients, AdamW on each rank's range plus the parameter all-gather gives
// bit-identical weights, moments and EMA to AdamW on the whole buffer, step after step; the
// global norm summed over the ranges is the whole buffer's norm; a skipped step moves nothing.
// The reduction itself (reduce-scatter against all-reduce) is GradEquivalence.* in
// test_equivalence.cpp.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>
#include <thread>
#include <utility>

#include "dist/comm.h"
#include "dist/partition.h"
#include "dist/test_world.h"
#include "model/coatnet.h"
#include "train/ema.h"
#include "train/flat_params.h"
#include "train/optim.h"
#include "train/tiny_spec.h"
#include "train/zero.h"

using namespace coatnet;

namespace {

std::unique_ptr<dist::Comm> mpi_comm() {
  dist::CommOptions o;
  o.timeout_s = 60;
  return dist::make_comm("mpi", test_world(), o, false);
}

// One replica of the tiny CoAtNet with its optimizer and EMA: whole (every rank updates all of
// it) or sharded over the ranks.
struct Trainer {
  model::CoAtNet net;
  std::unique_ptr<train::FlatParams> flat;
  dist::Partition part;
  at::Tensor grads;  // the reduced gradients AdamW reads: the owned range, or the whole buffer
  std::unique_ptr<train::AdamW> adamw;
  std::unique_ptr<train::ModelEma> ema;
  std::unique_ptr<train::ParamsGather> gather;

  Trainer(dist::Comm& comm, bool sharded) : net(seeded()) {
    const int shards = sharded ? comm.size() : 1;
    flat = std::make_unique<train::FlatParams>(*net, shards);
    part = dist::Partition::even(flat->numel(), sharded ? comm.rank() : 0, shards);
    grads = sharded ? at::zeros({part.shard}) : flat->grads;
    adamw = std::make_unique<train::AdamW>(*flat, train::AdamWOptions{0.9, 0.999, 1e-8, 0.05}, part,
                                           grads);
    ema = std::make_unique<train::ModelEma>(*flat, *net, 0.9, part, &comm);
    gather = std::make_unique<train::ParamsGather>(flat->values, part, comm);
  }
  static model::CoAtNet seeded() {
    at::manual_seed(31);  // the same weights on every rank and in both replicas
    return model::CoAtNet(test::tiny_spec());
  }
  // The reduced gradient of step `step`, the same on every rank (as after a reduction),
  // nonzero on the parameters only; this replica takes the part it holds.
  void set_grads(int64_t step) {
    at::manual_seed(1000 + step);
    at::Tensor g = at::zeros({flat->numel()});
    for (const train::FlatEntry& e : flat->entries)
      g.narrow(0, e.offset, e.numel).normal_(0, 1e-2 * (step + 1));
    grads.copy_(g.narrow(0, part.begin(), part.shard));
  }
  at::Tensor norm(double max_norm, at::Tensor& found_inf, dist::Comm& comm) {
    return train::clip_grad_norm(grads, max_norm, found_inf, part.sharded() ? &comm : nullptr);
  }
  void update(double lr, const at::Tensor& found_inf) {
    adamw->step(lr, found_inf);
    ema->update(found_inf);
    gather->start();
    gather->wait();
  }
  // The whole buffer's first n elements (the unsharded layout; only padding follows).
  at::Tensor values(int64_t n) const { return flat->values.narrow(0, 0, n); }
};

}  // namespace

TEST(Zero, ShardedAdamWAndEmaEqualTheWholeUpdateBitForBit) {
  auto comm = mpi_comm();
  const int r = comm->rank(), w = comm->size();
  Trainer whole(*comm, false), sharded(*comm, true);
  const int64_t n = whole.flat->numel();
  ASSERT_EQ(sharded.flat->numel() % w, 0);
  ASSERT_EQ(sharded.flat->offsets(), whole.flat->offsets()) << "only the end may be padded";
  EXPECT_EQ(sharded.adamw->exp_avg.numel(), sharded.flat->numel() / w)
      << "each rank must hold 1/W of the moments";
  at::Tensor found_inf = at::zeros({});
  for (int64_t step = 0; step < 6; ++step) {
    whole.set_grads(step);
    sharded.set_grads(step);
    found_inf.fill_(step == 3 ? 1 : 0);  // step 3 is skipped: nothing may move
    const at::Tensor before = whole.values(n).clone();
    whole.update(1e-2, found_inf);
    sharded.update(1e-2, found_inf);
    if (step == 3) {
      EXPECT_TRUE(at::equal(whole.values(n), before)) << "a skipped step moved the weights";
    }
    ASSERT_TRUE(at::equal(sharded.values(n), whole.values(n)))
        << "step " << step << ": max |dw| " << (sharded.values(n) - whole.values(n)).abs().max();
  }
  EXPECT_EQ(sharded.adamw->steps(), 5);
  // This rank's range of the moments, and the padding beyond the parameters untouched.
  const int64_t b = sharded.part.begin(),
                len = std::max<int64_t>(0, std::min(n - b, sharded.part.shard));
  for (auto [mine, all] : {std::pair{sharded.adamw->exp_avg, whole.adamw->exp_avg},
                           std::pair{sharded.adamw->exp_avg_sq, whole.adamw->exp_avg_sq}}) {
    EXPECT_TRUE(at::equal(mine.narrow(0, 0, len), all.narrow(0, b, len)));
    EXPECT_EQ(mine.narrow(0, len, mine.numel() - len).abs().sum().item<double>(), 0);
  }
  // The EMA, gathered by swap() (collective) and swapped back.
  const at::Tensor live = sharded.values(n).clone();
  whole.ema->swap();
  sharded.ema->swap();
  EXPECT_TRUE(at::equal(sharded.values(n), whole.values(n))) << "the gathered EMA differs";
  EXPECT_FALSE(at::equal(sharded.values(n), live)) << "swap() did not bring the EMA in";
  whole.ema->swap();
  sharded.ema->swap();
  EXPECT_TRUE(at::equal(sharded.values(n), live)) << "the second swap() did not restore";
  if (r == 0) std::printf("W=%d: 6 sharded steps bit-identical to the whole update\n", w);
}

TEST(Zero, GlobalNormSumsTheRanges) {
  auto comm = mpi_comm();
  Trainer whole(*comm, false), sharded(*comm, true);
  whole.set_grads(2);
  sharded.set_grads(2);
  at::Tensor f1 = at::zeros({}), f2 = at::zeros({});
  const double a = whole.norm(0, f1, *comm).item<double>();
  const double b = sharded.norm(0, f2, *comm).item<double>();
  EXPECT_NEAR(b, a, 1e-6 * a) << "the norm over the ranks is not the whole buffer's";
  // A non-finite gradient on one rank's range stops the step on every rank.
  sharded.grads.zero_();
  if (comm->rank() == comm->size() - 1) sharded.grads[0] = std::numeric_limits<float>::infinity();
  f2.zero_();
  sharded.norm(1.0, f2, *comm);
  EXPECT_EQ(f2.item<float>(), 1.0f) << "rank " << comm->rank() << " would take the step";
}

// The parameter all-gather completes while it is polled (as the loader polls it while the rank
// waits for its next batch), before anything waits for it; every rank then holds every rank's
// range (rank r's range filled with r + 1).
TEST(Zero, ParamsGatherCompletesWhilePolledAndGivesEveryRange) {
  auto comm = mpi_comm();
  const int r = comm->rank(), w = comm->size();
  const int64_t shard = 1 << 20;  // 4 MiB per rank: more than one eager message
  at::Tensor values = at::zeros({shard * w});
  const auto part = dist::Partition::even(values.numel(), r, w);
  values.narrow(0, part.begin(), shard).fill_(r + 1);
  train::ParamsGather gather(values, part, *comm);
  gather.start();
  const auto t0 = clock_type::now();
  while (!gather.poll() && seconds_since(t0) < 10)
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  gather.wait();
  if (w > 1) EXPECT_TRUE(gather.overlapped()) << "not complete after 10 s of polling";
  for (int j = 0; j < w; ++j) {
    const at::Tensor range = values.narrow(0, j * shard, shard);
    EXPECT_TRUE(range.eq(j + 1).all().item<bool>()) << "rank " << j << "'s range not gathered";
  }
  if (r == 0)
    std::printf("W=%d: all-gather of %d x 4 MiB complete while polled (window %.1f ms)\n", w, w,
                1e3 * gather.window_s());
}
