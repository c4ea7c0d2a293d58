// A checkpoint's manifest.yaml (docs/ARCHITECTURE.md "Checkpoint format"): everything needed to
// resume, and a map of every flat tensor onto the shard files that hold it. Read back with every
// name, range and path validated before any shard is touched: a manifest can only name files inside
// its own directory, and its segments must tile each tensor exactly.
//
//   Manifest m = read_manifest("runs/x/checkpoints/step-00001200");  // throws ManifestError
//   for (const ShardFile& f : m.shards) ...
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace coatnet::checkpoint {

struct ManifestError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kFormat = "coatnet-checkpoint/1";
inline constexpr const char* kManifestName = "manifest.yaml";
inline constexpr const char* kConfigName = "config.yaml";

enum class DType { F32, F64 };
const char* dtype_name(DType t);
int64_t dtype_size(DType t);

// One flat tensor of the training state ("params", "exp_avg", "exp_avg_sq", "ema" in float32;
// "buffers", "ema_buffers" in float64, which holds BatchNorm's integer counters exactly, with
// one row per rank: world_size × the layout's length).
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  int64_t numel = 0;
};

// [begin, end) of tensor `tensor`, stored in a shard as dataset "<tensor>/<begin>".
struct Segment {
  std::string tensor;
  int64_t begin = 0, end = 0;
  std::string dataset() const { return tensor + "/" + std::to_string(begin); }
};

struct ShardFile {
  std::string file;  // a plain file name inside the checkpoint directory
  int64_t bytes = 0;
  uint64_t xxh3 = 0;  // of the whole file
  std::vector<Segment> segments;
};

// What one element range of "params" or "buffers" is: a named tensor of the model.
struct LayoutEntry {
  std::string name;
  int64_t offset = 0;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

struct Manifest {
  int64_t step = 0;              // optimizer steps done
  int64_t epoch = 0;             // sampler state: the epoch in progress ...
  int64_t samples_consumed = 0;  // ... and its samples already handed out, over all ranks
  int64_t optimizer_steps = 0;   // AdamW's bias-correction count (skipped steps excluded)
  int64_t skipped_steps = 0;
  int64_t global_batch = 0, accum_steps = 1;
  int world_size = 1;
  uint64_t seed = 0;
  std::string backend;      // the checkpoint plugin that wrote it
  std::string model;        // model.name
  std::string config_hash;  // of the recipe keys (see train/checkpointing.cpp)
  std::string created;      // UTC, ISO 8601
  double best_top1 = -1;
  int64_t best_step = -1;
  std::string precision;  // precision.backend
  std::map<std::string, double> precision_state;
  std::vector<TensorSpec> tensors;
  std::map<std::string, std::vector<LayoutEntry>> layout;  // "params", "buffers"
  std::vector<ShardFile> shards;
  uint64_t config_xxh3 = 0;  // of config.yaml beside the manifest

  const TensorSpec* tensor(const std::string& name) const;
};

// Checks a manifest's internal consistency; throws ManifestError naming the first problem.
void validate(const Manifest& m, const std::string& where);

std::string to_yaml(const Manifest& m);
// One shard entry as the manifest writes it: how the ranks tell rank 0 what they wrote.
std::string shard_to_yaml(const ShardFile& f);
ShardFile shard_from_yaml(const std::string& text, const std::string& where);
Manifest from_yaml(const std::string& text, const std::string& where);  // validated
Manifest read_manifest(const std::string& dir);                         // dir/manifest.yaml

std::string hex64(uint64_t v);
uint64_t parse_hex64(const std::string& s, const std::string& where);

}  // namespace coatnet::checkpoint
