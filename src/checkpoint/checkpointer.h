// Saving and resuming the whole training state (docs/ARCHITECTURE.md "Checkpoint format"),
// collectively on every rank:
//   save    each rank copies its range of the flat fp32 state (parameters, AdamW moments, EMA)
//           to host memory — the plugin `checkpoint.backend` picks the ranges — and writes it to
//           its own HDF5 shard, both in a background thread when `checkpoint.async` (the copy
//           overlaps the next forward/backward; only the next update waits for it); once every
//           rank's shard is fsynced (checked at step boundaries with one small all-reduce),
//           rank 0 commits the manifest and `latest`, then applies retention.
//   resume  `auto` takes the newest checkpoint whose manifest, sizes and checksums are right
//           (each rank checks a share of the shards; bad ones are reported and skipped); each
//           rank reads its part of the state at the current world size from the shards that
//           overlap it, and the parts are all-gathered.
//
//   Checkpointer ckpt(options, world, comm, log);
//   if (auto dir = ckpt.find("auto")) manifest = ckpt.load(*dir, state);  // state: state.h
//   ... ckpt.before_update();         // every step, before optimizer.step()
//   ... ckpt.poll();                  // every step, after it
//   ckpt.save(point, state);          // at epoch ends / every N steps
//   ckpt.finish();                    // waits for and commits the last save
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/backend.h"
#include "checkpoint/manifest.h"
#include "checkpoint/state.h"

namespace torch::nn {
class Module;
}
namespace coatnet::dist {
class World;
class Comm;
}  // namespace coatnet::dist

namespace coatnet::checkpoint {

struct CheckpointOptions {
  std::string root;     // the directory holding step-…/ and latest
  std::string backend;  // checkpoint plugin
  bool async = true;
  int64_t keep_last = 3, keep_every = 0;
  bool stop_on_error = true;  // a failed save stops the run (else: warn, go on)
  std::string config_text;    // the resolved config, saved beside each manifest
  std::string config_hash;
  std::string model;
  uint64_t seed = 0;
  int64_t global_batch = 0, accum_steps = 1;
};

// The loop's position, saved with the tensors.
struct ResumePoint {
  int64_t step = 0, epoch = 0, samples_consumed = 0, skipped_steps = 0;
  double best_top1 = -1;
  int64_t best_step = -1;
};

class Checkpointer {
 public:
  using Log = std::function<void(const std::string&)>;  // rank 0's messages
  Checkpointer(CheckpointOptions options, dist::World& world, dist::Comm& comm, Log log);
  ~Checkpointer();  // waits for a write in flight (without committing it)

  // Throws, listing the available ones, when `name` is not a checkpoint plugin (at start).
  static void check_backend(const std::string& name);

  // Collective. "auto": the newest valid checkpoint under the root (nullopt: none);
  // otherwise a step directory, or a root to take the newest valid one from. A named step
  // directory that is not valid is an error.
  std::optional<std::string> find(const std::string& what);
  // Collective: loads a checkpoint found by find() into the tensors of `state`, in place, at any
  // world size, and sets its numbers (optimizer steps, precision state) for their owners to read.
  // A tensor the checkpoint lacks is refused unless it has an if_missing.
  Manifest load(const std::string& dir, State& state);

  // Collective. Async: returns at once; the copy of this rank's part to host memory runs in the
  // background during the next forward and backward, and before_update() waits for it.
  void save(const ResumePoint& at, const State& state);
  // Before every optimizer (and EMA) update: the snapshot of a save in flight must be complete.
  void before_update();
  void poll();    // collective, each step: commits a finished async save
  void finish();  // collective: waits for and commits the save in flight
  bool pending() const { return static_cast<bool>(inflight_); }

  // Seconds saves have kept training waiting so far (in save(), and in before_update() for a
  // snapshot not finished yet).
  double stall_s() const { return stall_s_; }
  const Backend& backend() const { return *backend_; }

 private:
  struct InFlight;
  void commit_inflight();
  std::optional<std::string> first_valid(const std::string& root);
  std::string problem_everywhere(const std::string& dir);

  CheckpointOptions opt_;
  dist::World& world_;
  dist::Comm& comm_;
  Log log_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<InFlight> inflight_;
  double stall_s_ = 0;
};

// One process, no collectives (export): the weights of checkpoint `dir` — or its EMA's — into
// `net`'s parameters and buffers by name; `net` must be the model it was saved from (built from
// the checkpoint's config.yaml).
void load_model_weights(const std::string& dir, torch::nn::Module& net, bool ema);

// `saved`, a whole flat tensor in the checkpoint's parameter layout, into `dst` in the model's:
// the same entries (names, shapes, order) at offsets that may differ, as in a checkpoint written
// before parameters were aligned in the flat buffer. Padding in `dst` is left as it is.
void place_flat(const at::Tensor& saved, const std::vector<LayoutEntry>& saved_layout,
                at::Tensor dst, const std::vector<LayoutEntry>& model_layout);

// Elements [begin, begin + dst.numel()) of flat tensor `name` of checkpoint `dir` in the model's
// layout, read from the shards that hold them into `dst` (any device): what a ZeRO-1 rank holds
// of the optimizer state, at any world size, from a checkpoint saved with or without ZeRO-1.
// Beyond the saved tensor (padding for another world size) it is zero.
void read_flat_range(const std::string& dir, const Manifest& m, const std::string& name,
                     at::Tensor dst, int64_t begin, const std::vector<LayoutEntry>& model_layout);

// The hash a manifest keeps of the recipe (config::Config::recipe(): key → value).
std::string recipe_hash(const std::map<std::string, std::string>& recipe);

}  // namespace coatnet::checkpoint
