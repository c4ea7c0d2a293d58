#include "dist/comm.h"

#include <algorithm>
#include <stdexcept>

#include "dist/world.h"
#include "plugin/registry.h"
#include "util/text.h"

namespace coatnet::dist {

std::vector<std::string> comm_backends() {
  return plugin::names_of("comm");
}

std::unique_ptr<Comm> make_comm(const std::string& backend, const World& world,
                                const CommOptions& options, bool cuda_device) {
  const std::string name = backend == "auto" ? (cuda_device ? "nccl" : "mpi") : backend;
  if (name == "mpi" && cuda_device)
    throw std::invalid_argument(
        "dist.backend = mpi, but the model is on a GPU: the mpi backend reduces CPU tensors; "
        "use dist.backend=nccl (or auto)");
  if (name == "nccl") {
    if (!cuda_device)
      throw std::invalid_argument(
          "dist.backend = nccl needs a GPU, and this rank has none (no CUDA device visible); "
          "use dist.backend=mpi (or auto) for CPU training");
    const auto names = comm_backends();
    if (std::find(names.begin(), names.end(), "nccl") == names.end())
      throw std::invalid_argument(
          "dist.backend = nccl, but the nccl plugin is not there (it builds when CMake finds a "
          "CUDA LibTorch and NCCL's headers and library); comm plugins found: " +
          text::join(names, ", "));
  }
  CommArgs args;
  args.options = options;
  args.rank = world.rank();
  args.size = world.size();
  args.local_rank = world.local_rank();
  args.hosts = world.hosts();
  return plugin::create<Comm>("comm", name, &args, "dist.backend");
}

}  // namespace coatnet::dist
