// Ending the whole job when a collective times out; inline so that the comm plugins share it
// without linking the core.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

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

// Who stopped taking part. Every wait loop answers an "are you there?" (serve_presence); a
// rank whose collective timed out asks every other rank and waits a moment for the answers.
// Ranks that are waiting too answer from their own wait loops; the silent ones are those that
// are gone, hung, or cut off — the ones the timeout message names, with their hosts.
namespace presence {
constexpr int kPing = 0x7c01, kPong = 0x7c02;
inline char token = 1;  // a send buffer that outlives every request

inline void serve() {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kPing, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS || !flag)
      return;
    char ping = 0;
    MPI_Recv(&ping, 1, MPI_CHAR, st.MPI_SOURCE, kPing, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Request r;
    if (MPI_Isend(&token, 1, MPI_CHAR, st.MPI_SOURCE, kPong, MPI_COMM_WORLD, &r) == MPI_SUCCESS)
      MPI_Request_free(&r);
  }
}

// The ranks that do not answer within wait_s, in rank order.
inline std::vector<int> silent_ranks(int self, int size, double wait_s = 3) {
  for (int r = 0; r < size; ++r) {
    MPI_Request req;
    if (r != self && MPI_Isend(&token, 1, MPI_CHAR, r, kPing, MPI_COMM_WORLD, &req) == MPI_SUCCESS)
      MPI_Request_free(&req);
  }
  std::vector<char> heard(std::max(size, self + 1), 0);  // never empty: GCC warned of heard[self]
  heard[self] = 1;
  int missing = size - 1;
  const auto start = std::chrono::steady_clock::now();
  while (missing > 0 &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < wait_s) {
    serve();  // the others may be asking too
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kPong, MPI_COMM_WORLD, &flag, &st) == MPI_SUCCESS && flag) {
      char pong = 0;
      MPI_Recv(&pong, 1, MPI_CHAR, st.MPI_SOURCE, kPong, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (!heard[st.MPI_SOURCE]) --missing;
      heard[st.MPI_SOURCE] = 1;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::vector<int> out;
  for (int r = 0; r < size; ++r)
    if (!heard[r]) out.push_back(r);
  return out;
}

// "rank 1 (on node02), rank 3 (on node04)"
inline std::string name_ranks(const std::vector<int>& ranks,
                              const std::vector<std::string>& hosts) {
  std::string s;
  for (int r : ranks) {
    if (!s.empty()) s += ", ";
    s += "rank " + std::to_string(r);
    if (r < static_cast<int>(hosts.size())) s += " (on " + hosts[r] + ")";
  }
  return s;
}
}  // namespace presence

// Prints "[rank R] coatnet: error: collective '<what>' at step S did not complete within …",
// naming the ranks that do not answer (and their hosts), and aborts every rank (mpirun then
// ends the job).
[[noreturn]] inline void abort_on_timeout(int rank, const std::string& what, int64_t step,
                                          double timeout_s,
                                          const std::vector<std::string>& hosts = {},
                                          bool ask = true) {
  // ask = false where MPI may not be called (a thread other than the main one).
  std::string who = "another rank has stopped taking part (crashed, hung, killed or cut off)";
  if (ask) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const std::vector<int> silent = presence::silent_ranks(rank, size);
    who = silent.empty()
              ? "every rank answers, so they are waiting in different operations (a bug: "
                "please report it with this log)"
              : presence::name_ranks(silent, hosts) + (silent.size() == 1 ? " has" : " have") +
                    " stopped taking part (crashed, hung, killed or cut off: no answer within "
                    "3 s)";
  }
  const std::string self =
      rank < static_cast<int>(hosts.size()) ? " on " + hosts[rank] : std::string();
  std::fprintf(stderr,
               "[rank %d] coatnet: error: collective '%s' at step %lld did not complete within "
               "dist.timeout_s = %g s%s: %s. Aborting the job.\n",
               rank, what.c_str(), static_cast<long long>(step), timeout_s, self.c_str(),
               who.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  exit_after_grace(3);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

// Polls `done` until it is true: spinning at first (the usual case: the peer is just behind),
// then yielding the core to other ranks' work, answering "are you there?", and ending the job
// with abort_on_timeout once `timeout_s` has passed. MPI_Test inside `done` also drives Open
// MPI's progress. Shared by the World's collectives and comm-mpi's.
template <typename Done>
void poll_until(Done done, const std::string& what, int rank, int64_t step, double timeout_s,
                const std::vector<std::string>& hosts) {
  const auto start = std::chrono::steady_clock::now();
  for (int polls = 0; !done(); ++polls) {
    if (polls < 2000) continue;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    if ((polls & 255) != 0) continue;
    presence::serve();
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s)
      abort_on_timeout(rank, what, step, timeout_s, hosts);
  }
}

}  // namespace coatnet::dist
