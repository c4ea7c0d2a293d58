#include "cuda/device_memory.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>

namespace coatnet::cuda {

DevicePeak take_device_peak(const at::Device& device) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const c10::DeviceIndex index = device.index() < 0 ? 0 : device.index();
  try {
    const auto stats = alloc::getDeviceStats(index);
    // [0]: StatType::AGGREGATE (all pool sizes), whose namespace moved between LibTorch 2.x.
    DevicePeak p{stats.allocated_bytes[0].peak,
                 static_cast<int64_t>(at::cuda::getDeviceProperties(index)->totalGlobalMem)};
    alloc::resetPeakStats(index);
    return p;
  } catch (const c10::Error&) {
    return {};  // an allocator backend without statistics: a figure must not end a run
  }
}

std::string device_name(const at::Device& device) {
  return at::cuda::getDeviceProperties(device.index() < 0 ? 0 : device.index())->name;
}

}  // namespace coatnet::cuda
