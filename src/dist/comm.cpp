#include "dist/comm.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "build_config.h"
#include "dist/world.h"
#include "util/text.h"

namespace coatnet::dist {

// One factory per backend, each in its own folder under backends/.
std::unique_ptr<Comm> make_mpi_comm(const CommOptions& options);
#if COATNET_WITH_NCCL
std::unique_ptr<Comm> make_nccl_comm(const CommOptions& options, const World& world);
#endif

std::vector<std::string> comm_backends() {
#if COATNET_WITH_NCCL
  return {"mpi", "nccl"};
#else
  return {"mpi"};
#endif
}

std::unique_ptr<Comm> make_comm(const std::string& backend, const World& world,
                                const CommOptions& options, bool cuda_device) {
  const std::string name = backend == "auto" ? (cuda_device ? "nccl" : "mpi") : backend;
  if (name == "mpi") {
    if (cuda_device)
      throw std::invalid_argument(
          "dist.backend = mpi, but the model is on a GPU: the mpi backend reduces CPU tensors; "
          "use dist.backend=nccl (or auto)");
    return make_mpi_comm(options);
  }
  if (name == "nccl") {
    if (!cuda_device)
      throw std::invalid_argument(
          "dist.backend = nccl needs a GPU, and this rank has none (no CUDA device visible); "
          "use dist.backend=mpi (or auto) for CPU training");
#if COATNET_WITH_NCCL
    return make_nccl_comm(options, world);
#else
    (void)world;
    throw std::invalid_argument(
        "dist.backend = nccl, but this build has no NCCL (it needs a CUDA LibTorch and nvcc at "
        "configure time); compiled in: " +
        text::join(comm_backends(), ", "));
#endif
  }
  throw std::invalid_argument(
      "dist.backend = '" + backend +
      "' is not a comm backend; choose auto or one of: " + text::join(comm_backends(), ", "));
}

void abort_on_timeout(int rank, const std::string& what, int64_t step, double timeout_s) {
  std::fprintf(stderr,
               "[rank %d] coatnet: error: collective '%s' at step %lld did not complete within "
               "dist.timeout_s = %g s: another rank has stopped taking part (crashed, hung, or "
               "killed; look for its message above). Aborting the job.\n",
               rank, what.c_str(), static_cast<long long>(step), timeout_s);
  std::fflush(stderr);
  std::fflush(stdout);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

}  // namespace coatnet::dist
