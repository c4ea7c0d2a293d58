// The checkpoint directory of a run: one committed `step-NNNNNNNN/` per save, `latest` naming
// the newest, retention, and the choice of what to resume from. A step directory counts only
// once its manifest is committed (written to a temporary name, fsynced, renamed); an
// interrupted save leaves a directory without one, which is reported and never loaded.
//
//   for (const Entry& e : list_checkpoints(root)) ...       // oldest first
//   std::string problem = check_checkpoint(e.dir, 0, 1);    // "" when sound
//   commit(root, dir, manifest);                            // manifest + latest, atomically
//   prune(root, keep_last, keep_every);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"

namespace coatnet::checkpoint {

std::string step_dir_name(int64_t step);  // "step-00001200"

struct Entry {
  std::string dir;  // root/step-…
  int64_t step = -1;
  bool committed = false;  // manifest present and well-formed
  std::string problem;     // why not, when not
};

// Step directories under root, oldest first (missing root: none).
std::vector<Entry> list_checkpoints(const std::string& root);

// "" when the manifest is valid and the shards this rank checks (every world-th one, starting
// at `rank`) have the manifest's sizes and checksums; otherwise the first problem, naming the
// file. With world = 1 everything is checked.
std::string check_checkpoint(const std::string& dir, int rank, int world);

// Rank 0, after every rank's shards are written and fsynced: config.yaml's checksum goes into
// the manifest, which is written to a temporary name, fsynced, renamed; then `latest`.
void commit(const std::string& root, const std::string& dir, Manifest manifest);

// Deletes committed checkpoints beyond the newest `keep_last`, except every `keep_every`-th
// step (0: none) and the newest valid one; returns what was deleted. Uncommitted directories
// older than the newest committed one (interrupted saves) are deleted too.
std::vector<std::string> prune(const std::string& root, int64_t keep_last, int64_t keep_every);

// The newest checkpoint under root that `problem` finds sound ("" = sound), or "" if none.
// By default the check is check_checkpoint() in this one process; the Checkpointer passes one
// that asks every rank. Each directory passed over is added to `skipped` as "DIR: PROBLEM".
using ProblemFn = std::function<std::string(const std::string& dir)>;
std::string newest_valid(const std::string& root, std::vector<std::string>* skipped = nullptr,
                         const ProblemFn& problem = {});

// What a command's CKPT argument names: a step directory as given, or else the newest valid
// checkpoint under a checkpoint directory (the ones passed over added to `skipped`); throws
// std::invalid_argument when there is none.
std::string resolve_checkpoint(const std::string& path, std::vector<std::string>* skipped);

// What `--resume PATH` names: a step directory itself, or a checkpoint root (→ "").
bool is_step_dir(const std::string& path);

}  // namespace coatnet::checkpoint
