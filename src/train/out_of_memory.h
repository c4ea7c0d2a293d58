// A failed allocation explained in the run's terms. CUDA's caching allocator throws
// c10::OutOfMemoryError ("CUDA out of memory. Tried to allocate ..."), the CPU allocator a
// c10::Error ("can't allocate memory"); either says how many bytes were missing but not which
// of the run's settings to change. `coatnet train` adds what it knows: the batch per rank, the
// precision and image size that did not fit, the cheapest changes that keep the recipe (the
// same optimizer batch through gradient accumulation), and the command that predicts the memory
// per rank before the next try.
#pragma once

#include <exception>
#include <string>

#include "config/config.h"

namespace coatnet::train {

// Whether `e` is an allocation that failed for want of memory (on a GPU or a CPU).
bool is_out_of_memory(const std::exception& e);

// The lines added to an out-of-memory error of `coatnet train --config config_path` with `cfg`
// (as requested: `auto` keys unresolved) at `world_size` ranks; `on_gpu` is where it failed.
std::string out_of_memory_hint(const config::Config& cfg, const std::string& config_path,
                               int world_size, bool on_gpu);

// `e`'s message (without a C++ backtrace) and the hint when `e` is a failed allocation; empty
// when it is not.
std::string out_of_memory_message(const std::exception& e, const config::Config& cfg,
                                  const std::string& config_path, int world_size);

// Fault injection for the tests: COATNET_FAULT_OOM_STEP=N makes step N throw CUDA's
// out-of-memory error (on rank COATNET_FAULT_OOM_RANK, default every rank) before its forward.
void maybe_fail_allocation(int rank, int64_t step);

}  // namespace coatnet::train
