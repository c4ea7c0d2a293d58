// The phases of a training run that train() (train/trainer.cpp) calls by name: where the run
// lives, resuming it, evaluating it, its final weights, and the stop signals it honours.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/checkpointer.h"
#include "train/evaluate.h"
#include "train/report.h"
#include "train/run_parts.h"

namespace coatnet::train {

// train.run_dir / train.name, or / MODEL-TIMESTAMP by rank 0's clock (all ranks call it).
std::string run_directory(const config::Config& cfg, const dist::World& world);
// checkpoint.dir, or RUN_DIR/checkpoints where it is empty.
std::string checkpoint_root(const config::Config& cfg, const std::string& run_dir);
// Rank 0 writes the run's config.yaml and opens its metrics.jsonl (appending when resumed);
// other ranks get a log that records nothing.
std::unique_ptr<MetricsLog> open_run_directory(bool root, const std::string& run_dir,
                                               const std::string& config_text, bool resumed);

// Where a resumed run continues; empty for a fresh one.
struct Resumed {
  std::optional<checkpoint::Manifest> manifest;
  std::string from;  // the step directory
  explicit operator bool() const { return manifest.has_value(); }
  int64_t step() const { return manifest ? manifest->step : 0; }
};
// train.resume: loads the checkpoint it names (or, for auto, the newest valid one under `root`)
// into the training state and puts the loader where the run stopped; refuses another global
// batch; reports what changed in the recipe. A fresh run when train.resume is empty.
Resumed resume_run(checkpoint::Checkpointer* ckpt, RunParts& run, const std::string& root,
                   const dist::World& world, util::Progress& progress);

// The model on the validation set, and its EMA when there is one, each with BatchNorm
// statistics averaged over the ranks for the evaluation only (when loop.reduce_bn).
struct Evaluation {
  EvalResult model;
  std::optional<EvalResult> ema;
};
Evaluation evaluate_run(RunParts& run);
// "[eval] step 96: top-1 81.20%  top-5 95.10%  loss 0.8123  (10000 samples, 2.1 s)"
std::string eval_line(const EvalResult& r, int64_t step, bool ema);

// final.safetensors (and final_ema.safetensors), in timm's names, by rank 0: the weights with
// BatchNorm statistics averaged over the ranks, as evaluation used them.
void save_final_weights(RunParts& run, const std::string& run_dir, bool root);

// A stop request (SIGUSR1/SIGUSR2/SIGTERM: a preemption notice from Slurm's --signal, or mpirun
// forwarding one), noted while this lives; the ranks agree on it at the next step boundary,
// save and exit.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int received() const;  // the signal, or 0

 private:
  std::vector<void (*)(int)> old_;
};

}  // namespace coatnet::train
