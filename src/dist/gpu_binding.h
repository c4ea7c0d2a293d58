// One GPU per NCCL rank. A job that starts more ranks on a host than it has GPUs (mpirun -np 8
// on a 4-GPU node), or a scheduler's binding that hands two ranks the same GPU, fails inside
// ncclCommInitRank with NCCL's "invalid usage". comm-nccl checks first: every rank's host, the
// PCI bus id of the GPU it chose and how many GPUs it sees are gathered, and two ranks on one
// GPU end the job naming them and how to start it. The bus id, not the device index, names a
// GPU: with one visible GPU per rank (srun --gpus-per-task=1) every rank uses cuda:0 of its own.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace coatnet::dist {

struct RankGpu {
  std::string host;    // where the rank runs
  std::string bus_id;  // PCI bus id of its GPU, e.g. 0000:17:00.0
  int device = 0;      // the CUDA device index it chose
  int visible = 0;     // how many GPUs it sees
};

// Empty when no two ranks of one host share a GPU; else the error for the first two that do
// (by rank), with that host's rank count, GPU count and how to start the job. Inline: the
// comm-nccl plugin uses it and links no core library.
inline std::string shared_gpu_error(const std::vector<RankGpu>& ranks) {
  std::map<std::pair<std::string, std::string>, size_t> first;  // (host, bus id) -> rank
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankGpu& g = ranks[r];
    const auto [at, fresh] = first.emplace(std::make_pair(g.host, g.bus_id), r);
    if (fresh) continue;
    const size_t other = at->second;
    const auto on_host = std::count_if(ranks.begin(), ranks.end(),
                                       [&](const RankGpu& x) { return x.host == g.host; });
    std::set<std::string> gpus;  // the host's GPUs that its ranks chose
    for (const RankGpu& x : ranks)
      if (x.host == g.host) gpus.insert(x.bus_id);
    const int seen = std::max(g.visible, static_cast<int>(gpus.size()));
    return "ranks " + std::to_string(other) + " and " + std::to_string(r) + " on " + g.host +
           " would share the GPU " + g.bus_id + " (cuda:" + std::to_string(ranks[other].device) +
           " of rank " + std::to_string(other) + ", cuda:" + std::to_string(g.device) +
           " of rank " + std::to_string(r) + "): NCCL needs a GPU of its own for each rank. " +
           g.host + " runs " + std::to_string(on_host) + " ranks and rank " + std::to_string(r) +
           " sees " + std::to_string(g.visible) + (g.visible == 1 ? " GPU" : " GPUs") +
           ". Start at most " + std::to_string(seen) + " rank(s) per host (mpirun --npernode " +
           std::to_string(seen) + ", or srun --ntasks-per-node=" + std::to_string(seen) +
           " --gpus-per-task=1), or give each rank its own GPU through CUDA_VISIBLE_DEVICES";
  }
  return "";
}

}  // namespace coatnet::dist
