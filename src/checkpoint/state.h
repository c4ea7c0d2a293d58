// What a checkpoint holds, described by the objects that own it: the checkpoint code knows
// tensors, names and numbers only. FlatParams, AdamW, the EMA and the model's buffers add their
// part (train/checkpoint_state.h collects them) and read it back after a load, as PyTorch's
// OptimizerBase::save(OutputArchive&) and load(InputArchive&) do. docs/ARCHITECTURE.md
// "Checkpoint format" says how each kind is stored.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/manifest.h"

namespace coatnet::checkpoint {

// Absent from a checkpoint that is being loaded: fills the tensors some other way and returns a
// line for the log (nullptr: the checkpoint is refused instead).
using IfMissing = std::function<std::string()>;

// A 1-D float32 tensor in the layout of the flat parameters (parameters, AdamW's moments, the
// EMA; all share State::layout). Held whole by every rank, the files split it across ranks by
// the checkpoint backend; held in part (ZeRO-1: `values` is elements [begin, begin +
// values.numel()) of a tensor of `total`), each rank writes its own part, whatever the backend.
// A load at any world size, whole or in part, fills what this rank holds.
struct FlatTensor {
  std::string name;
  at::Tensor values;  // saved from; loaded into, in place
  IfMissing if_missing;
  int64_t begin = 0;   // held in part: where `values` starts in the whole tensor
  int64_t total = -1;  // held in part: the whole tensor's elements (-1: `values` is whole)
  bool partial() const { return total >= 0; }
  int64_t numel() const { return partial() ? total : values.numel(); }
};

// Tensors of which each rank has its own (BatchNorm's running statistics, unless SyncBN): kept
// as one float64 row per rank. A load takes its own rank's row at the same world size, rank
// r mod W's at another.
struct RankTensors {
  std::string name;
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // in order; loaded into, in place
  IfMissing if_missing;
};

struct State {
  // What each range of the flat tensors is: name, offset and shape of every model parameter.
  // A load matches it with the saved one by name and shape and moves each tensor to its offset.
  std::vector<LayoutEntry> layout;
  std::vector<FlatTensor> flat;
  std::vector<RankTensors> per_rank;
  // Numbers that resume a run exactly. load() sets them from the checkpoint.
  int64_t optimizer_steps = 0;
  std::string precision;  // the precision plugin's name
  std::map<std::string, double> precision_state;
};

}  // namespace coatnet::checkpoint
