// `coatnet train`: the data-parallel training loop (one rank per GPU, or per CPU share).
//
//   init: threads, device, comm → model (same seed everywhere, then broadcast from rank 0)
//         → flat parameters + gradient buckets → AdamW, schedule, EMA → loaders
//   step: for each micro-step: batch → (Mixup/CutMix) → forward → loss → backward, whose
//         hooks start each full bucket's all-reduce; then wait, clip, AdamW, EMA
//   eval: at epoch ends and every train.eval_every_steps, model and EMA
//   save: checkpoints at epoch ends / every N steps / on a stop signal (src/checkpoint)
//   end:  final weights (timm names) and a summary in the run directory
#pragma once

#include <cstdint>
#include <string>

namespace coatnet::config {
class Config;
}
namespace coatnet::dist {
class World;
}

namespace coatnet::train {

struct TrainSummary {
  std::string run_dir;
  int64_t steps = 0;
  double best_top1 = -1, final_top1 = -1, final_top1_ema = -1;
  int64_t best_step = -1;
  double wall_s = 0, images_per_s = 0;
  double data_wait_share = 0, comm_wait_share = 0;  // of the training step time
  double checkpoint_stall_s = 0;   // training time spent in checkpoint saves (snapshots)
  bool stopped_by_signal = false;  // a stop signal ended the run early (after a checkpoint)
  double peak_memory_gib = -1;     // the most any rank held at once (report.h: MemoryFigures)
  double device_memory_gib = -1;   // the GPU's memory (-1 on a CPU)
};

TrainSummary train(const config::Config& cfg, dist::World& world);

// Fault injection for the timeout test: rank COATNET_FAULT_STALL_RANK stops taking part
// (sleeps) at step COATNET_FAULT_STALL_STEP. Off unless both variables are set.
void maybe_stall(int rank, int64_t step, const char* where = "start");

}  // namespace coatnet::train
