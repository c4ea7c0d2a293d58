#include "cuda/step_graph.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace coatnet::cuda {

struct StepGraph::Impl {
  cudaStream_t raw = nullptr;
  std::optional<c10::cuda::CUDAStreamGuard> current;
  at::cuda::CUDAGraph graph;
  bool captured = false;
};

StepGraph::StepGraph(const at::Device& device) : impl_(std::make_unique<Impl>()) {
  if (!device.is_cuda())
    throw std::invalid_argument("train.cuda_graph needs a CUDA device, not " + device.str());
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  {
    c10::cuda::CUDAGuard on(index);  // the stream belongs to the device current at its creation
    // Blocking (cudaStreamCreate's default): ordered with the legacy default stream, on which
    // other threads' copies (a checkpoint's snapshot) and the set-up before the loop ran.
    if (const cudaError_t rc = cudaStreamCreate(&impl_->raw); rc != cudaSuccess)
      throw std::runtime_error(std::string("train.cuda_graph: cudaStreamCreate: ") +
                               cudaGetErrorString(rc));
  }
  // Current (with its device) until destroyed; then the previous ones again.
  impl_->current.emplace(c10::cuda::getStreamFromExternal(impl_->raw, index));
}

StepGraph::~StepGraph() {
  cudaStreamSynchronize(impl_->raw);
  impl_->graph.reset();
  impl_->current.reset();  // the previous stream is current again
  cudaStreamDestroy(impl_->raw);
}

void StepGraph::capture(const std::function<void()>& step) {
  if (impl_->captured) throw std::logic_error("StepGraph::capture: already captured");
  // The eager steps' cached blocks go back to the device: the graph's private pool holds the
  // step's memory from now on, and would otherwise come on top of them.
  cudaStreamSynchronize(impl_->raw);
  c10::cuda::CUDACachingAllocator::emptyCache();
  // Thread-local: the loader's pinned allocations, the NCCL watchdog and the autograd engine's
  // device thread may call CUDA while this thread captures (they would end a global capture).
  impl_->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
  try {
    step();
  } catch (...) {
    // End the capture so that the stream is usable (and the real error is the one reported).
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(impl_->raw, &partial);
    if (partial) cudaGraphDestroy(partial);
    throw;
  }
  impl_->graph.capture_end();
  impl_->captured = true;
}

bool StepGraph::captured() const {
  return impl_->captured;
}

void StepGraph::replay() {
  if (!impl_->captured) throw std::logic_error("StepGraph::replay: nothing captured");
  impl_->graph.replay();
}

}  // namespace coatnet::cuda
