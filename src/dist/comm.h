// The collectives the trainer needs, behind one interface with one plugin per folder
// (backends/comm-mpi for CPU tensors, backends/comm-nccl for CUDA tensors). Everything here is
// inline: plugins implement it without linking the core.
//
//   auto comm = make_comm("auto", world, {.timeout_s = 600}, device);
//   auto work = comm->allreduce_async(bucket);   // starts now, overlaps what follows
//   ...
//   work->wait();                                // bucket now holds the sum over ranks
//
// Every wait is bounded by `timeout_s`: a collective that does not complete in time (a rank
// crashed, hung or stopped taking part) aborts the whole job with a message naming this rank,
// the operation and the training step, instead of hanging forever.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace coatnet::dist {

class World;

struct CommOptions {
  double timeout_s = 600;
  int device_index = -1;  // nccl: the CUDA device of this rank (-1: the local rank)
};

// What a comm plugin's create() receives (MPI is initialised by then).
struct CommArgs {
  CommOptions options;
  int rank = 0, size = 1, local_rank = 0;
  std::vector<std::string> hosts;  // every rank's host, for timeout messages
};

// A started collective.
class Work {
 public:
  virtual ~Work() = default;
  virtual bool done() = 0;  // non-blocking test (also drives MPI's progress)
  virtual void wait() = 0;  // blocks until done, or aborts the job after the timeout
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Sum over ranks, in place. `what` names the operation in timeout messages.
  virtual std::unique_ptr<Work> allreduce_async(at::Tensor t, const std::string& what) = 0;
  virtual void broadcast(at::Tensor t, int root, const std::string& what) = 0;
  // Every rank's tensor (same shape everywhere), stacked: (world, *t.shape).
  virtual at::Tensor allgather(const at::Tensor& t, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;
  // The sum over ranks, scattered: `in` is cut into consecutive segments of counts[0],
  // counts[1], ... elements, one per rank (they add up to in.numel(); a count may be 0), and
  // `out` (counts[rank()] elements, apart from `in`) receives the sum over ranks of segment
  // rank(). For ZeRO-1: a gradient bucket reduced only into the ranks that own its parts.
  virtual std::unique_ptr<Work> reduce_scatter_async(at::Tensor in, at::Tensor out,
                                                     std::vector<int64_t> counts,
                                                     const std::string& what) = 0;
  // In place: `t` holds size() segments of `count` elements; when done every rank's `t` holds
  // segment r from rank r, for every r (ZeRO-1: the updated parameter ranges, shared).
  virtual std::unique_ptr<Work> allgather_inplace_async(at::Tensor t, int64_t count,
                                                        const std::string& what) = 0;

  void allreduce(at::Tensor t, const std::string& what) { allreduce_async(t, what)->wait(); }
  // The checks every backend makes for reduce_scatter_async and allgather_inplace_async, before
  // anything is sent; std::invalid_argument naming the operation and the numbers.
  void check_scatter(const at::Tensor& in, const at::Tensor& out,
                     const std::vector<int64_t>& counts, const std::string& what) const {
    auto fail = [&](const std::string& why) { throw std::invalid_argument(what + ": " + why); };
    if (static_cast<int>(counts.size()) != size())
      fail("reduce_scatter needs one count per rank: " + std::to_string(size()) + " ranks, " +
           std::to_string(counts.size()) + " counts");
    int64_t total = 0;
    for (int64_t c : counts) {
      if (c < 0) fail("reduce_scatter count " + std::to_string(c) + " is negative");
      total += c;
    }
    if (total != in.numel())
      fail("reduce_scatter counts add up to " + std::to_string(total) + ", the input has " +
           std::to_string(in.numel()) + " elements");
    if (out.numel() != counts[rank()] || out.scalar_type() != in.scalar_type())
      fail("reduce_scatter output has " + std::to_string(out.numel()) + " elements; rank " +
           std::to_string(rank()) + "'s count is " + std::to_string(counts[rank()]) +
           " (and its dtype must be the input's)");
  }
  void check_allgather(const at::Tensor& t, int64_t count, const std::string& what) const {
    if (count < 0 || t.numel() != count * size())
      throw std::invalid_argument(what + ": allgather of " + std::to_string(count) +
                                  " elements per rank needs " + std::to_string(count * size()) +
                                  " elements, got " + std::to_string(t.numel()));
  }
  // The training step shown in timeout messages.
  void set_step(int64_t step) { step_ = step; }
  int64_t step() const { return step_; }

 protected:
  int64_t step_ = -1;
};

// The comm plugin "mpi", "nccl", or "auto" (nccl for a CUDA device, mpi otherwise). An unknown
// name, or NCCL without a GPU or without the nccl plugin, is an error that lists what is
// available.
std::unique_ptr<Comm> make_comm(const std::string& backend, const World& world,
                                const CommOptions& options, bool cuda_device);
std::vector<std::string> comm_backends();  // the comm plugins found

}  // namespace coatnet::dist
