// Ending the whole job when a collective times out; inline so that the comm plugins share it
// without linking the core.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace coatnet::dist {

// Prints "[rank R] coatnet: error: collective '<what>' at step S did not complete within …"
// and aborts every rank (mpirun then ends the job).
[[noreturn]] inline void abort_on_timeout(int rank, const std::string& what, int64_t step,
                                          double timeout_s) {
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
