// MPI backend of dist::Comm, for CPU tensors. Every collective is non-blocking (MPI_I*) so the
// gradient buckets' all-reduces overlap backward; waits poll with MPI_Test, which both drives
// MPI's progress (Open MPI has no progress thread) and lets the wait give up after the timeout.
#include <ATen/ops/empty.h>
#include <mpi.h>

#include <chrono>
#include <limits>
#include <stdexcept>
#include <thread>

#include "dist/abort.h"
#include "dist/comm.h"
#include "plugin/abi.h"
#include "util/check.h"

namespace coatnet::dist {

namespace {

MPI_Datatype mpi_type(const at::Tensor& t, const std::string& what) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    default:
      throw std::invalid_argument("comm-mpi: " + what + ": dtype " +
                                  std::string(c10::toString(t.scalar_type())) +
                                  " is not supported (float32, float64, int64, int32 are)");
  }
}

// MPI counts are int.
int as_int(int64_t n, const std::string& what) {
  if (n > std::numeric_limits<int>::max())
    throw std::invalid_argument("comm-mpi: " + what + ": " + std::to_string(n) +
                                " elements exceed MPI's int counts; use smaller buckets");
  return static_cast<int>(n);
}

void check_tensor(const at::Tensor& t, const std::string& what) {
  if (!t.device().is_cpu())
    throw std::invalid_argument("comm-mpi: " + what + ": tensor is on " + t.device().str() +
                                "; the mpi backend takes CPU tensors (use dist.backend=nccl)");
  if (!t.is_contiguous())
    throw std::invalid_argument("comm-mpi: " + what + ": tensor is not contiguous");
}

class MpiComm;

class MpiWork : public Work {
 public:
  MpiWork(const MpiComm& comm, std::string what, at::Tensor keep)
      : comm_(comm), what_(std::move(what)), keep_(std::move(keep)) {}
  ~MpiWork() override {
    if (!finished_) wait();  // the buffer must outlive the operation
  }
  bool done() override;
  void wait() override;
  MPI_Request request = MPI_REQUEST_NULL;

 private:
  const MpiComm& comm_;
  std::string what_;
  at::Tensor keep_;  // holds the buffer alive while MPI uses it
  bool finished_ = false;

 public:
  at::Tensor keep_also;     // a second buffer (reduce-scatter's output)
  std::vector<int> counts;  // read by MPI until the operation completes
};

class MpiComm : public Comm {
 public:
  explicit MpiComm(const CommArgs& a) : opt_(a.options), hosts_(a.hosts) {
    // A communicator of its own: the trainer's collectives never interleave with World's.
    COATNET_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  double timeout_s() const { return opt_.timeout_s; }
  const std::vector<std::string>& hosts() const { return hosts_; }

  std::unique_ptr<Work> allreduce_async(at::Tensor t, const std::string& what) override {
    check_tensor(t, what);
    auto w = std::make_unique<MpiWork>(*this, what, t);
    COATNET_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()),
                                     mpi_type(t, what), MPI_SUM, comm_, &w->request),
                      "MPI_Iallreduce (" + what + ")");
    return w;
  }

  std::unique_ptr<Work> reduce_scatter_async(at::Tensor in, at::Tensor out,
                                             std::vector<int64_t> counts,
                                             const std::string& what) override {
    check_tensor(in, what);
    check_tensor(out, what);
    check_scatter(in, out, counts, what);
    auto w = std::make_unique<MpiWork>(*this, what, in);
    w->keep_also = out;
    for (int64_t c : counts) w->counts.push_back(as_int(c, what));
    COATNET_MPI_CHECK(MPI_Ireduce_scatter(in.data_ptr(), out.data_ptr(), w->counts.data(),
                                          mpi_type(in, what), MPI_SUM, comm_, &w->request),
                      "MPI_Ireduce_scatter (" + what + ")");
    return w;
  }

  std::unique_ptr<Work> allgather_inplace_async(at::Tensor t, int64_t count,
                                                const std::string& what) override {
    check_tensor(t, what);
    check_allgather(t, count, what);
    auto w = std::make_unique<MpiWork>(*this, what, t);
    COATNET_MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t.data_ptr(),
                                     as_int(count, what), mpi_type(t, what), comm_, &w->request),
                      "MPI_Iallgather (" + what + ")");
    return w;
  }

  void broadcast(at::Tensor t, int root, const std::string& what) override {
    check_tensor(t, what);
    MpiWork w(*this, what, t);
    COATNET_MPI_CHECK(MPI_Ibcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t, what), root,
                                 comm_, &w.request),
                      "MPI_Ibcast (" + what + ")");
    w.wait();
  }

  at::Tensor allgather(const at::Tensor& t, const std::string& what) override {
    at::Tensor in = t.contiguous();
    check_tensor(in, what);
    std::vector<int64_t> shape{size_};
    for (int64_t s : in.sizes()) shape.push_back(s);
    at::Tensor out = at::empty(shape, in.options());
    MpiWork w(*this, what, out);
    const int n = static_cast<int>(in.numel());
    COATNET_MPI_CHECK(MPI_Iallgather(in.data_ptr(), n, mpi_type(in, what), out.data_ptr(), n,
                                     mpi_type(in, what), comm_, &w.request),
                      "MPI_Iallgather (" + what + ")");
    w.wait();
    return out;
  }

  void barrier(const std::string& what) override {
    MpiWork w(*this, what, at::Tensor());
    COATNET_MPI_CHECK(MPI_Ibarrier(comm_, &w.request), "MPI_Ibarrier (" + what + ")");
    w.wait();
  }

 private:
  CommOptions opt_;
  std::vector<std::string> hosts_;  // of every rank, for timeout messages
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

bool MpiWork::done() {
  if (finished_) return true;
  int flag = 0;
  COATNET_MPI_CHECK(MPI_Test(&request, &flag, MPI_STATUS_IGNORE), "MPI_Test (" + what_ + ")");
  finished_ = flag != 0;
  return finished_;
}

void MpiWork::wait() {
  poll_until([&] { return done(); }, what_, comm_.rank(), comm_.step(), comm_.timeout_s(),
             comm_.hosts());
}

void* create(const void* args) {
  return static_cast<Comm*>(new MpiComm(*static_cast<const CommArgs*>(args)));
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{
      COATNET_PLUGIN_ABI, "comm", "mpi", "1.0", "MPI collectives on CPU tensors", &create};
  return &d;
}

}  // namespace
}  // namespace coatnet::dist

COATNET_PLUGIN(coatnet::dist::describe)
