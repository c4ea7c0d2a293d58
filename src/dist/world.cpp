#include "dist/world.h"

#include <mpi.h>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

#include "dist/abort.h"
#include "util/atomic_file.h"
#include "util/check.h"

namespace coatnet::dist {

namespace {

std::unique_ptr<World>& instance() {
  static std::unique_ptr<World> w;
  return w;
}

}  // namespace

World& World::init(int& argc, char**& argv) {
  auto& w = instance();
  if (w) return *w;
  int provided = 0;
  // Worker threads (decoders, the comm backend) never call MPI; the main thread does.
  COATNET_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided),
                    "MPI_Init_thread");
  w.reset(new World());
  // Errors come back as return codes, so the checks below can say where they happened
  // (COATNET_MPI_CHECK), instead of MPI aborting with a message that names none of it.
  COATNET_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "start-up");
  COATNET_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w->rank_), "MPI_Comm_rank");
  COATNET_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w->size_), "MPI_Comm_size");
  w->find_local_rank();
  w->check_launcher_world();
  w->hosts_ = w->gather_strings(w->host_, "start-up: every rank's host name");
  w->report_started();
  // Destroy (and finalize) at exit, after every command has returned.
  std::atexit([] { instance().reset(); });
  return *w;
}

// The gather above has returned on rank 0, so MPI is up in every rank. A failed start before
// this point loses no work, and cluster/slurm/common.sh starts the job again when this file is
// missing: some Slurm/PMIx stacks crash a rank inside MPI_Init now and then (the script says
// which).
void World::report_started() const {
  const char* path = std::getenv("COATNET_STARTED_FILE");
  if (rank_ != 0 || !path || !*path) return;
  std::string hosts;
  for (const auto& h : hosts_) hosts += h + "\n";
  // Not worth failing the job over: without the file, the script would start a crashed job
  // again, which --resume auto and the idempotent pack and eval make harmless.
  try {
    util::write_text_atomically(path, std::to_string(size_) + " ranks on\n" + hosts);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "[rank 0] coatnet: warning: cannot write COATNET_STARTED_FILE=%s (%s); the Slurm "
                 "scripts will take a crash of this job for a failed start\n",
                 path, e.what());
  }
}

void World::check_launcher_world() const {
  // srun without PMI support starts every task as an MPI singleton: N processes that each
  // believe they are rank 0 of 1 would train N separate models and overwrite each other's run
  // directory. The launcher says how many tasks it started; MPI must see the same world.
  const char* var =
      std::getenv("OMPI_COMM_WORLD_SIZE") ? "OMPI_COMM_WORLD_SIZE" : "SLURM_STEP_NUM_TASKS";
  const char* v = std::getenv(var);
  if (!v || !*v || std::atoi(v) == size_) return;
  if (std::strcmp(var, "SLURM_STEP_NUM_TASKS") == 0 && !std::getenv("SLURM_PROCID")) return;
  throw std::runtime_error(
      std::string(var) + "=" + v + " tasks were launched, but MPI sees a world of " +
      std::to_string(size_) +
      ": the ranks were started without the launcher's PMI (with srun, pass "
      "--mpi=pmix or --mpi=pmi2; `srun --mpi=list` shows what this Slurm has), "
      "or use mpirun");
}

void World::find_local_rank() {
  MPI_Comm node;
  COATNET_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
      "MPI_Comm_split_type");
  COATNET_MPI_CHECK(MPI_Comm_rank(node, &local_rank_), "MPI_Comm_rank(node)");
  COATNET_MPI_CHECK(MPI_Comm_size(node, &local_size_), "MPI_Comm_size(node)");
  MPI_Comm_free(&node);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  COATNET_MPI_CHECK(MPI_Get_processor_name(name, &len), "MPI_Get_processor_name");
  host_.assign(name, len);
  // The launcher's own idea of the local rank must agree, or GPUs would be shared by accident
  // (e.g. a hostfile listing one node twice under two names).
  // Under mpirun inside a Slurm allocation SLURM_LOCALID describes the batch step, not this
  // rank, so Open MPI's variable is checked first and Slurm's only for srun launches.
  const char* var =
      std::getenv("OMPI_COMM_WORLD_LOCAL_RANK") ? "OMPI_COMM_WORLD_LOCAL_RANK" : "SLURM_LOCALID";
  const char* v = std::getenv(var);
  if (v && *v && size_ > 1 && std::atoi(v) != local_rank_)
    std::fprintf(stderr,
                 "[rank %d] coatnet: warning: %s=%s but the shared-memory split of host %s gives "
                 "local rank %d; using %d\n",
                 rank_, var, v, host_.c_str(), local_rank_, local_rank_);
}

int World::cores_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int World::threads_per_rank() const {
  // mpirun may bind each rank to one core; then the mask is already this rank's share.
  const int cores = cores_available();
  const int node_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (cores < node_cores) return cores;
  return std::max(1, node_cores / local_size_);
}

World::~World() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// Every collective of the World is non-blocking and waited on with a deadline (poll_until):
// a rank that stops taking part ends the job with a message naming this rank, its host, the
// operation, the step and the ranks that do not answer, instead of a hang.
namespace {

void wait(MPI_Request& req, const std::string& what, const World& w) {
  poll_until(
      [&] {
        int flag = 0;
        COATNET_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), what);
        return flag != 0;
      },
      what, w.rank(), w.step(), w.timeout_s(), w.hosts());
}

}  // namespace

void World::barrier(const std::string& what) const {
  MPI_Request req;
  COATNET_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req), what);
  wait(req, what, *this);
}

int64_t World::sum(int64_t v, const std::string& what) const {
  int64_t out = 0;
  MPI_Request req;
  COATNET_MPI_CHECK(MPI_Iallreduce(&v, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &req), what);
  wait(req, what, *this);
  return out;
}

int64_t World::max(int64_t v, const std::string& what) const {
  int64_t out = 0;
  MPI_Request req;
  COATNET_MPI_CHECK(MPI_Iallreduce(&v, &out, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD, &req), what);
  wait(req, what, *this);
  return out;
}

std::vector<std::string> World::gather_strings(const std::string& s,
                                               const std::string& what) const {
  int len = static_cast<int>(s.size());
  std::vector<int> lens(size_), displs(size_);
  MPI_Request req;
  COATNET_MPI_CHECK(MPI_Iallgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD, &req),
                    what);
  wait(req, what, *this);
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::string all(total, '\0');
  COATNET_MPI_CHECK(MPI_Iallgatherv(s.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                                    MPI_CHAR, MPI_COMM_WORLD, &req),
                    what);
  wait(req, what, *this);
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) out.push_back(all.substr(displs[r], lens[r]));
  return out;
}

void World::abort(int code) const {
  std::fflush(stdout);
  std::fflush(stderr);
  exit_after_grace(code);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace coatnet::dist
