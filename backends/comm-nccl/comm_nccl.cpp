// NCCL backend of dist::Comm, for CUDA tensors. The communicator is made from a unique id that
// rank 0 creates and MPI broadcasts. Collectives run on a stream of their own: each waits for
// the work queued so far on the caller's stream (the gradients it reduces), and the caller's
// stream waits for it in Work::wait() — on the device: the host never waits for a bucket.
// Deadlines are kept by a watchdog thread (as PyTorch's ProcessGroupNCCL does): it polls every
// collective's completion event and NCCL's asynchronous error, and when a collective is not
// done within dist.timeout_s it aborts the communicator and the job, naming the rank, the
// operation and the step. A host read that waits for a hung collective (a loss's .item()) is
// therefore ended by the watchdog too, instead of hanging.
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dist/abort.h"
#include "dist/comm.h"
#include "dist/gpu_binding.h"
#include "plugin/abi.h"
#include "util/check.h"

namespace coatnet::dist {

namespace {

ncclDataType_t nccl_type(const at::Tensor& t, const std::string& what) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    default:
      throw std::invalid_argument("comm-nccl: " + what + ": dtype " +
                                  std::string(c10::toString(t.scalar_type())) +
                                  " is not supported");
  }
}

// A completion event, shared by the Work handed to the caller and the watchdog's entry.
struct Event {
  cudaEvent_t e = nullptr;
  Event() {
    COATNET_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

class NcclComm;

class NcclWork : public Work {
 public:
  NcclWork(NcclComm& comm, std::shared_ptr<Event> event, bool captured)
      : comm_(comm), event_(std::move(event)), captured_(captured) {}
  bool done() override;
  void wait() override;  // orders the caller's stream after the collective; no host wait

 private:
  NcclComm& comm_;
  std::shared_ptr<Event> event_;
  // Launched while its stream was captured into a CUDA graph: never done now. (Querying its
  // event fails, and the error would stay as the thread's last one, blamed on a later kernel.)
  bool captured_;
};

class NcclComm : public Comm {
 public:
  explicit NcclComm(const CommArgs& a)
      : opt_(a.options), rank_(a.rank), size_(a.size), hosts_(a.hosts) {
    device_ = opt_.device_index >= 0 ? opt_.device_index : a.local_rank;
    COATNET_CUDA_CHECK(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    check_one_gpu_per_rank();
    ncclUniqueId id;
    if (rank_ == 0) COATNET_NCCL_CHECK(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
      throw std::runtime_error("comm-nccl: MPI_Bcast of the NCCL unique id failed");
    init_with_deadline(id);
    stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_);
    watchdog_ = std::thread([this] { watch(); });
  }
  ~NcclComm() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
    if (comm_) ncclCommDestroy(comm_);
  }
  // Two ranks on one GPU fail inside ncclCommInitRank with NCCL's "invalid usage": every rank
  // gathers where the others run and the GPU each chose, and all end with the same error naming
  // them and how to start the job (dist/gpu_binding.h).
  void check_one_gpu_per_rank() {
    struct Choice {
      char bus_id[32];
      int device, visible;
    } mine{};
    COATNET_CUDA_CHECK(cudaDeviceGetPCIBusId(mine.bus_id, sizeof mine.bus_id - 1, device_),
                       "cudaDeviceGetPCIBusId");
    COATNET_CUDA_CHECK(cudaGetDeviceCount(&mine.visible), "cudaGetDeviceCount");
    mine.device = device_;
    std::vector<Choice> all(static_cast<size_t>(size_));
    COATNET_MPI_CHECK(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE,
                                    MPI_COMM_WORLD),
                      "the ranks' GPUs");
    std::vector<RankGpu> ranks;
    for (size_t r = 0; r < all.size(); ++r)
      ranks.push_back({r < hosts_.size() ? hosts_[r] : "rank " + std::to_string(r) + "'s host",
                       all[r].bus_id, all[r].device, all[r].visible});
    const std::string error = shared_gpu_error(ranks);
    if (!error.empty()) throw std::runtime_error("comm-nccl: " + error);
  }
  // ncclCommInitRank waits for every rank: one that never arrives would hang it. It runs on a
  // thread of its own while this one keeps the deadline (a timed-out init cannot be aborted:
  // the communicator does not exist yet, so the job is).
  void init_with_deadline(const ncclUniqueId& id) {
    std::mutex m;
    std::condition_variable cv;
    bool finished = false;
    ncclResult_t rc = ncclSuccess;
    std::thread init([&] {
      cudaSetDevice(device_);
      ncclResult_t r = ncclCommInitRank(&comm_, size_, id, rank_);
      std::lock_guard<std::mutex> lock(m);
      rc = r;
      finished = true;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, std::chrono::duration<double>(opt_.timeout_s),
                     [&] { return finished; })) {
      init.detach();
      abort_on_timeout(rank_, "ncclCommInitRank", step_, opt_.timeout_s, hosts_);
    }
    lock.unlock();
    init.join();
    COATNET_NCCL_CHECK(rc, "ncclCommInitRank");
  }
  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // Runs `launch` on the comm stream after the caller's queued work; the watchdog keeps `keep`
  // (the tensors the collective reads and writes) alive until it is done.
  template <typename Launch>
  std::unique_ptr<NcclWork> enqueue(const at::Tensor& t, const std::string& what, Launch launch,
                                    std::vector<at::Tensor> keep) {
    if (!t.is_cuda())
      throw std::invalid_argument("comm-nccl: " + what + ": tensor is on " + t.device().str() +
                                  "; the nccl backend takes CUDA tensors");
    if (!t.is_contiguous()) throw std::invalid_argument("comm-nccl: " + what + ": not contiguous");
    c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(device_);
    Event ready;
    COATNET_CUDA_CHECK(cudaEventRecord(ready.e, caller.stream()), "cudaEventRecord");
    COATNET_CUDA_CHECK(cudaStreamWaitEvent(stream_.stream(), ready.e, 0), "cudaStreamWaitEvent");
    COATNET_NCCL_CHECK(launch(stream_.stream()), what);
    auto done = std::make_shared<Event>();
    COATNET_CUDA_CHECK(cudaEventRecord(done->e, stream_.stream()), "cudaEventRecord");
    // Captured into a CUDA graph (train.cuda_graph), the collective runs at each replay, not
    // now: its event is never recorded for real, and CUDA refuses to query it. The graph's own
    // deadline is a collective enqueued after each replay (train/graphed_step.cpp).
    const bool captured = capturing(caller);
    if (!captured) {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back({done, std::chrono::steady_clock::now(), what, step_, std::move(keep)});
    }
    return std::make_unique<NcclWork>(*this, done, captured);
  }

  std::unique_ptr<Work> allreduce_async(at::Tensor t, const std::string& what) override {
    return enqueue(t, what,
                   [&](cudaStream_t s) {
                     return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t, what),
                                          ncclSum, comm_, s);
                   },
                   {t});
  }
  std::unique_ptr<Work> reduce_scatter_async(at::Tensor in, at::Tensor out,
                                             std::vector<int64_t> counts,
                                             const std::string& what) override {
    check_scatter(in, out, counts, what);
    if (!out.is_cuda() || !out.is_contiguous())
      throw std::invalid_argument("comm-nccl: " + what +
                                  ": the output must be a contiguous CUDA tensor");
    // Uneven segments: one reduce per owner, grouped into one launch (ncclReduceScatter
    // takes equal counts only).
    return enqueue(in, what,
                   [&](cudaStream_t s) {
                     ncclResult_t rc = ncclGroupStart();
                     const ncclDataType_t type = nccl_type(in, what);
                     const size_t bytes = in.element_size();
                     int64_t offset = 0;
                     for (int r = 0; r < size_ && rc == ncclSuccess; ++r) {
                       if (counts[r] > 0) {
                         const char* send =
                             static_cast<const char*>(in.data_ptr()) + offset * bytes;
                         void* recv = r == rank_ ? out.data_ptr() : nullptr;
                         rc = ncclReduce(send, recv, counts[r], type, ncclSum, r, comm_, s);
                       }
                       offset += counts[r];
                     }
                     const ncclResult_t end = ncclGroupEnd();
                     return rc != ncclSuccess ? rc : end;
                   },
                   {in, out});
  }
  std::unique_ptr<Work> allgather_inplace_async(at::Tensor t, int64_t count,
                                                const std::string& what) override {
    check_allgather(t, count, what);
    return enqueue(t, what,
                   [&](cudaStream_t s) {
                     // In place, as NCCL defines it: the send buffer is this rank's segment.
                     const char* send =
                         static_cast<const char*>(t.data_ptr()) + rank_ * count * t.element_size();
                     return ncclAllGather(send, t.data_ptr(), count, nccl_type(t, what), comm_, s);
                   },
                   {t});
  }
  void broadcast(at::Tensor t, int root, const std::string& what) override {
    enqueue(t, what,
            [&](cudaStream_t s) {
              return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t, what), root,
                                   comm_, s);
            },
            {t})
        ->wait();
  }
  at::Tensor allgather(const at::Tensor& t, const std::string& what) override {
    at::Tensor in = t.contiguous();
    std::vector<int64_t> shape{size_};
    for (int64_t d : in.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, in.options());
    enqueue(in, what,
            [&](cudaStream_t s) {
              return ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in, what),
                                   comm_, s);
            },
            {in, out})
        ->wait();
    return out;
  }
  void barrier(const std::string& what) override {
    at::Tensor one = at::ones({1}, at::TensorOptions().device(at::kCUDA, device_));
    auto work = allreduce_async(one, what);
    work->wait();
    // A barrier is a host wait by nature: poll, so that the deadline still holds.
    while (!work->done()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }

  c10::cuda::CUDAStream caller_stream() const { return c10::cuda::getCurrentCUDAStream(device_); }
  static bool capturing(const c10::cuda::CUDAStream& stream) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    COATNET_CUDA_CHECK(cudaStreamIsCapturing(stream.stream(), &status), "cudaStreamIsCapturing");
    return status != cudaStreamCaptureStatusNone;
  }

 private:
  struct Pending {
    std::shared_ptr<Event> done;
    std::chrono::steady_clock::time_point started;
    std::string what;
    int64_t step;
    std::vector<at::Tensor> keep;
  };

  // Collectives complete in the order they were enqueued on the one comm stream, so only the
  // oldest pending one can be late.
  void watch() {
    cudaSetDevice(device_);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::milliseconds(20));
      while (!pending_.empty()) {
        const cudaError_t rc = cudaEventQuery(pending_.front().done->e);
        if (rc == cudaSuccess) {
          pending_.pop_front();
          continue;
        }
        if (rc != cudaErrorNotReady)  // a real error, not "still running"
          fail(pending_.front(), std::string("CUDA error: ") + cudaGetErrorString(rc));
        const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                         pending_.front().started)
                               .count();
        if (age > opt_.timeout_s) {
          ncclCommAbort(comm_);
          abort_on_timeout(rank_, pending_.front().what, pending_.front().step, opt_.timeout_s,
                           hosts_, /*ask=*/false);  // the watchdog thread may not call MPI
        }
        break;
      }
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess &&
          async != ncclInProgress && !pending_.empty())
        fail(pending_.front(), "NCCL error: " + util::with_detail(ncclGetErrorString(async),
                                                                  ncclGetLastError(comm_)));
    }
  }

  [[noreturn]] void fail(const Pending& p, const std::string& why) {
    std::fprintf(stderr, "[rank %d] coatnet: error: collective '%s' at step %lld failed: %s\n",
                 rank_, p.what.c_str(), static_cast<long long>(p.step), why.c_str());
    std::fflush(stderr);
    ncclCommAbort(comm_);
    exit_after_grace(3);
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::_Exit(3);
  }

  CommOptions opt_;
  int rank_, size_, device_ = 0;
  std::vector<std::string> hosts_;
  ncclComm_t comm_ = nullptr;
  c10::cuda::CUDAStream stream_{c10::cuda::getDefaultCUDAStream()};
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;
  bool stop_ = false;
  std::thread watchdog_;
};

bool NcclWork::done() {
  return !captured_ && cudaEventQuery(event_->e) == cudaSuccess;
}

void NcclWork::wait() {
  const c10::cuda::CUDAStream caller = comm_.caller_stream();
  // A collective of a graph is joined inside the graph; outside its capture (the gradient
  // buckets' clean-up after the last replay) its event cannot be waited for, nor need be.
  if (captured_ && !NcclComm::capturing(caller)) return;
  COATNET_CUDA_CHECK(cudaStreamWaitEvent(caller.stream(), event_->e, 0), "cudaStreamWaitEvent");
}

void* create(const void* args) {
  return static_cast<Comm*>(new NcclComm(*static_cast<const CommArgs*>(args)));
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{
      COATNET_PLUGIN_ABI, "comm", "nccl", "1.0", "NCCL collectives on CUDA tensors", &create};
  return &d;
}

}  // namespace
}  // namespace coatnet::dist

COATNET_PLUGIN(coatnet::dist::describe)
