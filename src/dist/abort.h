// Ending the whole job when a collective times out; inline so that the comm plugins share it
// without linking the core.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace coatnet::dist {

// MPI_Abort asks the launcher to end the job, and waits for it: a rank whose host has lost its
// network never hears back. So a rank that aborts also exits by itself after a short grace
// period, whatever MPI_Abort does (the launcher's keepalive ends the rest of the job).
inline void exit_after_grace(int code, double seconds = 10) {
  std::thread([code, seconds] {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    std::_Exit(code);
  }).detach();
}

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
  exit_after_grace(3);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

}  // namespace coatnet::dist
