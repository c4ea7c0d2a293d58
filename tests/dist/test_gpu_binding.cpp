// dist::shared_gpu_error, which comm-nccl runs on every rank's (host, GPU bus id) before
// ncclCommInitRank: two ranks of one host on one GPU are named with how to start the job; one
// GPU per rank passes however the ranks name it (cuda:N of a host's GPUs, or cuda:0 of one
// visible GPU each), and the same bus id on two hosts is two GPUs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dist/gpu_binding.h"

using coatnet::dist::RankGpu;
using coatnet::dist::shared_gpu_error;

namespace {

std::string bus(int i) {
  return "0000:" + std::to_string(17 + i) + ":00.0";
}

// `ranks` ranks on each host, rank r on cuda:(local rank % visible) of `visible` GPUs.
std::vector<RankGpu> by_local_rank(const std::vector<std::string>& hosts, int ranks, int visible) {
  std::vector<RankGpu> all;
  for (const std::string& h : hosts)
    for (int local = 0; local < ranks; ++local)
      all.push_back({h, bus(local % visible), local % visible, visible});
  return all;
}

}  // namespace

TEST(GpuBinding, OneGpuPerRankPasses) {
  EXPECT_EQ(shared_gpu_error(by_local_rank({"node01", "node02"}, 4, 4)), "")
      << "the same bus ids on two hosts are two sets of GPUs";
  // srun --gpus-per-task=1: every rank sees one GPU, its cuda:0, a different one on the host.
  std::vector<RankGpu> bound;
  for (int local = 0; local < 4; ++local) bound.push_back({"node01", bus(local), 0, 1});
  EXPECT_EQ(shared_gpu_error(bound), "");
  EXPECT_EQ(shared_gpu_error({}), "");
}

TEST(GpuBinding, MoreRanksThanGpusOnAHostNamesTheFirstPairAndTheFix) {
  // mpirun -np 16 on two 4-GPU hosts of 8 ranks each: rank 4 takes cuda:4 % 4, rank 0's GPU.
  EXPECT_EQ(shared_gpu_error(by_local_rank({"node01", "node02"}, 8, 4)),
            "ranks 0 and 4 on node01 would share the GPU 0000:17:00.0 (cuda:0 of rank 0, cuda:0 "
            "of rank 4): NCCL needs a GPU of its own for each rank. node01 runs 8 ranks and rank 4 "
            "sees 4 GPUs. Start at most 4 rank(s) per host (mpirun --npernode 4, or srun "
            "--ntasks-per-node=4 --gpus-per-task=1), or give each rank its own GPU through "
            "CUDA_VISIBLE_DEVICES");
  // Two ranks on a one-GPU machine (the borrowed GPU machine: gpu-check's nccl_shared_gpu).
  const std::string one = shared_gpu_error(by_local_rank({"gpu"}, 2, 1));
  EXPECT_NE(one.find("ranks 0 and 1 on gpu would share"), std::string::npos) << one;
  EXPECT_NE(one.find("rank 1 sees 1 GPU. Start at most 1 rank(s) per host"), std::string::npos)
      << one;
}

TEST(GpuBinding, ABindingThatHandsTwoRanksOneGpuIsCaught) {
  // One visible GPU each, but the scheduler gave ranks 1 and 3 the same one.
  std::vector<RankGpu> bound{{"node01", bus(0), 0, 1},
                             {"node01", bus(1), 0, 1},
                             {"node01", bus(2), 0, 1},
                             {"node01", bus(1), 0, 1}};
  const std::string e = shared_gpu_error(bound);
  EXPECT_NE(e.find("ranks 1 and 3 on node01 would share the GPU 0000:18:00.0"), std::string::npos)
      << e;
  EXPECT_NE(e.find("Start at most 3 rank(s) per host"), std::string::npos)
      << "3 GPUs among its ranks: " << e;
}
