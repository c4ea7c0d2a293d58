// src/cuda without nvcc: the kernels are absent, and asking for one says so.
#include <stdexcept>

#include "cuda/batch_prep.h"
#include "cuda/bn_gelu.h"
#include "cuda/device_memory.h"
#include "cuda/dw_conv.h"
#include "cuda/step_graph.h"
#include "cuda/sync_check.h"

namespace coatnet::cuda {

namespace {
[[noreturn]] void no_kernels() {
  throw std::runtime_error(
      "train.cuda_kernels: this coatnet was built without its CUDA kernels (no nvcc at "
      "configure time; see `coatnet: CUDA kernels` in the configure output)");
}
}  // namespace

bool kernels_built() {
  return false;
}

DevicePeak take_device_peak(const at::Device&) {
  return {};
}

std::string device_name(const at::Device&) {
  return "";
}

at::Tensor prepare_batch(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const data::MixInfo&, at::ScalarType) {
  no_kernels();
}

const model::BnGeluKernels& bn_gelu_kernels() {
  static const model::BnGeluKernels k{
      [](const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, at::Tensor&, double,
         double) -> std::tuple<at::Tensor, at::Tensor, at::Tensor> { no_kernels(); },
      [](const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
         const at::Tensor&, const at::Tensor&,
         const at::Tensor&) -> std::tuple<at::Tensor, at::Tensor, at::Tensor> { no_kernels(); },
      [](const at::Tensor&) { return false; }};
  return k;
}

const model::DwConvKernels& dw_conv_kernels() {
  static const model::DwConvKernels k{
      [](const at::Tensor&, const at::Tensor&, at::IntArrayRef) -> at::Tensor { no_kernels(); },
      [](const at::Tensor&) { return false; }};
  return k;
}

struct StepGraph::Impl {};

StepGraph::StepGraph(const at::Device&) {
  throw std::runtime_error(
      "train.cuda_graph: this coatnet was built without CUDA (a CPU LibTorch, or no nvcc at "
      "configure time; see `coatnet: CUDA kernels` in the configure output)");
}
StepGraph::~StepGraph() = default;
void StepGraph::capture(const std::function<void()>&) {}
bool StepGraph::captured() const {
  return false;
}
void StepGraph::replay() {}

SyncCheck::SyncCheck(const std::string&) {}
SyncCheck::~SyncCheck() = default;

}  // namespace coatnet::cuda
