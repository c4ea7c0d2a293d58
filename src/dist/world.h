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

  void barrier() const;
  int64_t sum(int64_t v) const;  // all-reduce of one integer
  int64_t max(int64_t v) const;
  // Every rank's string, in rank order (for collecting per-rank reports on rank 0).
  std::vector<std::string> gather_strings(const std::string& s) const;
  [[noreturn]] void abort(int code) const;

 private:
  World() = default;
  int rank_ = 0, size_ = 1;
};

}  // namespace coatnet::dist
