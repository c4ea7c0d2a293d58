// The rank's GPU as the trainer reports it. What the CUDA caching allocator has handed out for
// tensors: the figure to compare with a
// device's size (and with `coatnet info --batch`'s plan) when a batch is chosen. The trainer
// logs the peak of each window of log steps (train/report.h).
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace coatnet::cuda {

struct DevicePeak {
  int64_t peak_bytes = -1;   // the most allocated at once since the last call; -1: not known
  int64_t total_bytes = -1;  // the device's memory
};

// The peak on `device` since the last call (or the process's start), and the allocator's peak
// reset so that the next call covers what follows. {-1, -1} in a build without CUDA.
DevicePeak take_device_peak(const at::Device& device);

// The GPU's name ("NVIDIA H100 80GB HBM3"); empty in a build without CUDA.
std::string device_name(const at::Device& device);

}  // namespace coatnet::cuda
