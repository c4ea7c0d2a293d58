// NCCL backend of dist::Comm, for CUDA tensors. The communicator is made from a unique id that
// rank 0 creates and MPI broadcasts. Collectives run on a stream of their own: each waits for
// the work queued so far on the caller's stream (the gradients it reduces), and the caller's
// stream waits for it in Work::wait(). The host polls the completion event so a collective
// that never completes aborts the communicator and the job after the timeout.
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "dist/abort.h"
#include "dist/comm.h"
#include "plugin/abi.h"

namespace coatnet::dist {

namespace {

void check_cuda(cudaError_t rc, const std::string& what) {
  if (rc != cudaSuccess)
    throw std::runtime_error("comm-nccl: " + what + ": " + cudaGetErrorString(rc));
}
void check_nccl(ncclResult_t rc, const std::string& what) {
  if (rc != ncclSuccess)
    throw std::runtime_error("comm-nccl: " + what + ": " + ncclGetErrorString(rc));
}

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

class NcclComm;

class NcclWork : public Work {
 public:
  NcclWork(NcclComm& comm, std::string what, at::Tensor keep);
  ~NcclWork() override;
  bool done() override { return cudaEventQuery(event_) == cudaSuccess; }
  void wait() override;
  cudaEvent_t event_ = nullptr;

 private:
  NcclComm& comm_;
  std::string what_;
  at::Tensor keep_;
};

class NcclComm : public Comm {
 public:
  explicit NcclComm(const CommArgs& a) : opt_(a.options), rank_(a.rank), size_(a.size) {
    device_ = opt_.device_index >= 0 ? opt_.device_index : a.local_rank;
    check_cuda(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
      throw std::runtime_error("comm-nccl: MPI_Bcast of the NCCL unique id failed");
    check_nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_);
  }
  ~NcclComm() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  double timeout_s() const { return opt_.timeout_s; }
  [[noreturn]] void abort(const std::string& what) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    abort_on_timeout(rank_, what, step_, opt_.timeout_s);
  }

  // Runs `launch` on the comm stream after the caller's queued work; returns its Work.
  template <typename Launch>
  std::unique_ptr<NcclWork> enqueue(const at::Tensor& t, const std::string& what, Launch launch) {
    if (!t.is_cuda())
      throw std::invalid_argument("comm-nccl: " + what + ": tensor is on " + t.device().str() +
                                  "; the nccl backend takes CUDA tensors");
    if (!t.is_contiguous()) throw std::invalid_argument("comm-nccl: " + what + ": not contiguous");
    c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(device_);
    cudaEvent_t ready;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(ready, caller.stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_.stream(), ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
    check_nccl(launch(stream_.stream()), what);
    auto w = std::make_unique<NcclWork>(*this, what, t);
    check_cuda(cudaEventRecord(w->event_, stream_.stream()), "cudaEventRecord");
    return w;
  }

  std::unique_ptr<Work> allreduce_async(at::Tensor t, const std::string& what) override {
    return enqueue(t, what, [&](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t, what), ncclSum,
                           comm_, s);
    });
  }
  void broadcast(at::Tensor t, int root, const std::string& what) override {
    enqueue(t, what, [&](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t, what), root, comm_,
                           s);
    })->wait();
  }
  at::Tensor allgather(const at::Tensor& t, const std::string& what) override {
    at::Tensor in = t.contiguous();
    std::vector<int64_t> shape{size_};
    for (int64_t d : in.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, in.options());
    enqueue(in, what, [&](cudaStream_t s) {
      return ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in, what), comm_,
                           s);
    })->wait();
    return out;
  }
  void barrier(const std::string& what) override {
    at::Tensor one = at::ones({1}, at::TensorOptions().device(at::kCUDA, device_));
    allreduce(one, what);
    check_cuda(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(device_).stream()), what);
  }

  c10::cuda::CUDAStream caller_stream() const { return c10::cuda::getCurrentCUDAStream(device_); }

 private:
  CommOptions opt_;
  int rank_, size_, device_ = 0;
  ncclComm_t comm_ = nullptr;
  c10::cuda::CUDAStream stream_{c10::cuda::getDefaultCUDAStream()};
};

NcclWork::NcclWork(NcclComm& comm, std::string what, at::Tensor keep)
    : comm_(comm), what_(std::move(what)), keep_(std::move(keep)) {
  check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate");
}

NcclWork::~NcclWork() {
  if (event_) cudaEventDestroy(event_);
}

void NcclWork::wait() {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  // The caller's stream waits on the device; the host only checks that it ever completes.
  check_cuda(cudaStreamWaitEvent(comm_.caller_stream().stream(), event_, 0), "cudaStreamWaitEvent");
  while (!done()) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (std::chrono::duration<double>(clock::now() - start).count() > comm_.timeout_s())
      comm_.abort(what_);
  }
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
