#include "cuda/sync_check.h"

#include <c10/cuda/CUDAFunctions.h>

#include <stdexcept>

namespace coatnet::cuda {

SyncCheck::SyncCheck(const std::string& mode) {
  using c10::cuda::SyncDebugMode;
  if (mode != "warn" && mode != "error") {
    if (mode != "off")
      throw std::invalid_argument("train.sync_check: '" + mode + "' is not off, warn or error");
    return;
  }
  auto& state = c10::cuda::warning_state();
  before_ = static_cast<int>(state.get_sync_debug_mode());
  state.set_sync_debug_mode(mode == "warn" ? SyncDebugMode::L_WARN : SyncDebugMode::L_ERROR);
  set_ = true;
}

SyncCheck::~SyncCheck() {
  if (set_)
    c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(before_));
}

}  // namespace coatnet::cuda
