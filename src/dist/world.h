// The process's place in the job: rank and world size from MPI. One World per process, made
// by the commands that work in parallel (pack now, train later); a single process started
// without mpirun is rank 0 of 1 (MPI singleton).
//
//   World& world = World::init(argc, argv);
//   if (world.rank() == 0) print_progress();
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coatnet::dist {

class World {
 public:
  static World& init(int& argc, char**& argv);  // MPI_Init_thread once; later calls return it
  ~World();
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // Place on this node, from a shared-memory split of the world (MPI_COMM_TYPE_SHARED): the
  // GPU index of this rank, and how many ranks share the node's cores.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& host() const { return host_; }
  const std::vector<std::string>& hosts() const { return hosts_; }  // every rank's, by rank
  // CPU cores this process may run on (its affinity mask), and a fair share of the node's
  // cores for one rank: intra-op threads when the config says 0.
  static int cores_available();
  int threads_per_rank() const;

  // Collectives over every rank, each bounded by the timeout (set_timeout): one that does not
  // complete in time aborts the job naming this rank, its host, `what` and the step.
  void barrier(const std::string& what = "barrier") const;
  int64_t sum(int64_t v, const std::string& what = "sum over ranks") const;
  int64_t max(int64_t v, const std::string& what = "max over ranks") const;
  // Every rank's string, in rank order (for collecting per-rank reports on rank 0).
  std::vector<std::string> gather_strings(const std::string& s,
                                          const std::string& what = "gather of reports") const;
  void set_timeout(double seconds) { timeout_s_ = seconds; }  // dist.timeout_s
  void set_step(int64_t step) { step_ = step; }               // shown in timeout messages
  double timeout_s() const { return timeout_s_; }
  int64_t step() const { return step_; }
  [[noreturn]] void abort(int code) const;

 private:
  World() = default;
  void find_local_rank();
  void check_launcher_world() const;  // throws when MPI's world is not what was launched
  void report_started() const;        // COATNET_STARTED_FILE, for the Slurm scripts' retry
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  double timeout_s_ = 600;  // dist.timeout_s's default until a command sets it
  int64_t step_ = -1;
  std::string host_;
  std::vector<std::string> hosts_;
};

}  // namespace coatnet::dist
