// train.sync_check: the training step must never make the host wait for the GPU (only log,
// evaluation and checkpoint steps read results back). While a SyncCheck is alive, an operation
// that would wait — a copy between the host's pageable memory and the GPU, .item(), nonzero(), a
// stream or device synchronisation — warns or throws where it happens, through c10's sync debug
// mode (what torch.cuda.set_sync_debug_mode sets in Python). That mode is one setting for the
// whole process: the trainer keeps the check off while a checkpoint's background copy runs.
#pragma once

#include <string>

namespace coatnet::cuda {

class SyncCheck {
 public:
  // `mode`: "off" (changes nothing), "warn" or "error", set while alive; the mode before comes
  // back after. A build without CUDA has nothing to check: every mode changes nothing.
  explicit SyncCheck(const std::string& mode);
  ~SyncCheck();
  SyncCheck(const SyncCheck&) = delete;
  SyncCheck& operator=(const SyncCheck&) = delete;

 private:
  int before_ = 0;
  bool set_ = false;
};

}  // namespace coatnet::cuda
