#include "checkpoint/manifest.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

namespace coatnet::checkpoint {

const char* dtype_name(DType t) {
  return t == DType::F32 ? "float32" : "float64";
}
int64_t dtype_size(DType t) {
  return t == DType::F32 ? 4 : 8;
}

int64_t LayoutEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorSpec* Manifest::tensor(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

uint64_t parse_hex64(const std::string& s, const std::string& where) {
  if (s.size() != 16 || s.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw ManifestError(where + ": checksum '" + s + "' is not 16 lowercase hex digits");
  return std::stoull(s, nullptr, 16);
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw ManifestError(where + ": " + what);
}

// A manifest may only name plain files inside its own directory.
void check_file_name(const std::string& f, const std::string& where) {
  if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos ||
      f.find('\\') != std::string::npos || f.find('\0') != std::string::npos)
    bad(where, "shard path '" + f +
                   "' is not a plain file name inside the checkpoint directory (a path escaping "
                   "the directory is never read)");
}

}  // namespace

namespace {

void emit_shard(YAML::Emitter& y, const ShardFile& s) {
  y << YAML::BeginMap;
  y << YAML::Key << "file" << YAML::Value << s.file;
  y << YAML::Key << "bytes" << YAML::Value << s.bytes;
  y << YAML::Key << "xxh3" << YAML::Value << hex64(s.xxh3);
  y << YAML::Key << "segments" << YAML::Value << YAML::BeginSeq;
  for (const auto& g : s.segments)
    y << YAML::Flow << YAML::BeginSeq << g.tensor << g.begin << g.end << YAML::EndSeq;
  y << YAML::EndSeq << YAML::EndMap;
}

ShardFile parse_shard(const YAML::Node& s, const std::string& where) {
  ShardFile f;
  f.file = s["file"].as<std::string>();
  f.bytes = s["bytes"].as<int64_t>();
  f.xxh3 = parse_hex64(s["xxh3"].as<std::string>(), where + ": shard '" + f.file + "'");
  for (const auto& g : s["segments"]) {
    if (!g.IsSequence() || g.size() != 3) bad(where, "a segment is not [tensor, begin, end]");
    f.segments.push_back({g[0].as<std::string>(), g[1].as<int64_t>(), g[2].as<int64_t>()});
  }
  return f;
}

}  // namespace

std::string shard_to_yaml(const ShardFile& f) {
  YAML::Emitter y;
  emit_shard(y, f);
  return y.c_str();
}

ShardFile shard_from_yaml(const std::string& text, const std::string& where) {
  try {
    return parse_shard(YAML::Load(text), where);
  } catch (const YAML::Exception& e) {
    throw ManifestError(where + ": " + e.what());
  }
}

void validate(const Manifest& m, const std::string& where) {
  if (m.world_size < 1) bad(where, "world_size " + std::to_string(m.world_size) + " < 1");
  if (m.step < 0 || m.epoch < 0 || m.samples_consumed < 0 || m.optimizer_steps < 0)
    bad(where, "negative step, epoch, samples_consumed or optimizer_steps");
  if (m.global_batch < 1) bad(where, "global_batch " + std::to_string(m.global_batch) + " < 1");
  std::set<std::string> names;
  for (const auto& t : m.tensors) {
    if (t.name.empty() || !names.insert(t.name).second)
      bad(where, "tensor name '" + t.name + "' is empty or repeated");
    if (t.numel < 0) bad(where, "tensor '" + t.name + "' has numel " + std::to_string(t.numel));
  }
  if (m.tensors.empty()) bad(where, "no tensors");
  // Each layout fits what it describes: "params" every float32 (flat) tensor; any other one the
  // per-rank row of the float64 tensor of its name.
  for (const auto& [key, entries] : m.layout) {
    std::vector<std::pair<std::string, int64_t>> fits;  // tensor, elements the layout may use
    if (key == "params") {
      for (const auto& t : m.tensors)
        if (t.dtype == DType::F32) fits.emplace_back(t.name, t.numel);
    } else if (const TensorSpec* t = m.tensor(key)) {
      fits.emplace_back(t->name, t->numel / std::max<int64_t>(m.world_size, 1));
    } else {
      bad(where, "layout '" + key + "' describes no tensor");
    }
    for (const auto& e : entries) {
      for (int64_t d : e.shape)
        if (d < 0) bad(where, "layout entry '" + e.name + "' has a negative dimension");
      for (const auto& [name, n] : fits)
        if (e.offset < 0 || e.offset + e.numel() > n)
          bad(where, "layout '" + key + "' entry '" + e.name + "' at offset " +
                         std::to_string(e.offset) + " runs past tensor '" + name + "' of " +
                         std::to_string(n) + " elements" + (key == "params" ? "" : " per rank"));
    }
  }
  // Each rank writes at most one shard, named for its rank and the world it was part of.
  if (m.shards.size() > static_cast<size_t>(m.world_size))
    bad(where, std::to_string(m.shards.size()) + " shard files for a world of " +
                   std::to_string(m.world_size) + " ranks (mismatched world size)");
  for (const auto& s : m.shards) {
    int rank = -1, world = -1;
    if (std::sscanf(s.file.c_str(), "shard-%d-of-%d.h5", &rank, &world) == 2 &&
        (world != m.world_size || rank < 0 || rank >= world))
      bad(where, "shard '" + s.file + "' does not belong to a world of " +
                     std::to_string(m.world_size) + " ranks (mismatched world size)");
  }
  // Every tensor tiled exactly once by the segments of all shards.
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> cover;
  std::set<std::string> files;
  for (const auto& s : m.shards) {
    check_file_name(s.file, where);
    if (s.file == kManifestName || s.file == kConfigName || !files.insert(s.file).second)
      bad(where, "shard file '" + s.file + "' is repeated or reserved");
    if (s.bytes <= 0) bad(where, "shard '" + s.file + "' has size " + std::to_string(s.bytes));
    for (const auto& g : s.segments) {
      const TensorSpec* t = m.tensor(g.tensor);
      if (!t) bad(where, "shard '" + s.file + "' holds unknown tensor '" + g.tensor + "'");
      if (g.begin < 0 || g.end <= g.begin || g.end > t->numel)
        bad(where, "shard '" + s.file + "' range [" + std::to_string(g.begin) + ", " +
                       std::to_string(g.end) + ") is outside tensor '" + g.tensor + "' of " +
                       std::to_string(t->numel) + " elements");
      cover[g.tensor].emplace_back(g.begin, g.end);
    }
  }
  for (const auto& t : m.tensors) {
    auto& c = cover[t.name];
    std::sort(c.begin(), c.end());
    int64_t at = 0;
    for (auto [b, e] : c) {
      if (b != at)
        bad(where, "tensor '" + t.name +
                       "': " + (b < at ? "ranges overlap at " : "no shard holds elements from ") +
                       std::to_string(std::min(b, at)));
      at = e;
    }
    if (at != t.numel)
      bad(where, "tensor '" + t.name + "': no shard holds elements from " + std::to_string(at));
  }
}

std::string to_yaml(const Manifest& m) {
  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "format" << YAML::Value << kFormat;
  y << YAML::Key << "step" << YAML::Value << m.step;
  y << YAML::Key << "epoch" << YAML::Value << m.epoch;
  y << YAML::Key << "samples_consumed" << YAML::Value << m.samples_consumed;
  y << YAML::Key << "optimizer_steps" << YAML::Value << m.optimizer_steps;
  y << YAML::Key << "skipped_steps" << YAML::Value << m.skipped_steps;
  y << YAML::Key << "global_batch" << YAML::Value << m.global_batch;
  y << YAML::Key << "accum_steps" << YAML::Value << m.accum_steps;
  y << YAML::Key << "world_size" << YAML::Value << m.world_size;
  y << YAML::Key << "seed" << YAML::Value << m.seed;
  y << YAML::Key << "backend" << YAML::Value << m.backend;
  y << YAML::Key << "model" << YAML::Value << m.model;
  y << YAML::Key << "config_hash" << YAML::Value << m.config_hash;
  y << YAML::Key << "config_xxh3" << YAML::Value << hex64(m.config_xxh3);
  y << YAML::Key << "created" << YAML::Value << m.created;
  y << YAML::Key << "best_top1" << YAML::Value << m.best_top1;
  y << YAML::Key << "best_step" << YAML::Value << m.best_step;
  y << YAML::Key << "precision" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "backend" << YAML::Value << m.precision;
  for (const auto& [k, v] : m.precision_state) y << YAML::Key << k << YAML::Value << v;
  y << YAML::EndMap;
  y << YAML::Key << "tensors" << YAML::Value << YAML::BeginSeq;
  for (const auto& t : m.tensors)
    y << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << t.name << YAML::Key
      << "dtype" << YAML::Value << dtype_name(t.dtype) << YAML::Key << "numel" << YAML::Value
      << t.numel << YAML::EndMap;
  y << YAML::EndSeq;
  y << YAML::Key << "shards" << YAML::Value << YAML::BeginSeq;
  for (const auto& s : m.shards) emit_shard(y, s);
  y << YAML::EndSeq;
  y << YAML::Key << "layout" << YAML::Value << YAML::BeginMap;
  for (const auto& [tensor, entries] : m.layout) {
    y << YAML::Key << tensor << YAML::Value << YAML::BeginSeq;
    for (const auto& e : entries) {
      y << YAML::Flow << YAML::BeginSeq << e.name << e.offset << YAML::Flow << YAML::BeginSeq;
      for (int64_t d : e.shape) y << d;
      y << YAML::EndSeq << YAML::EndSeq;
    }
    y << YAML::EndSeq;
  }
  y << YAML::EndMap;
  y << YAML::EndMap;
  return std::string(y.c_str()) + "\n";
}

Manifest from_yaml(const std::string& text, const std::string& where) {
  Manifest m;
  try {
    YAML::Node n = YAML::Load(text);
    if (!n.IsMap()) bad(where, "not a YAML mapping");
    if (!n["format"] || n["format"].as<std::string>() != kFormat)
      bad(where, std::string("format is not ") + kFormat);
    auto i64 = [&](const char* k) {
      if (!n[k]) bad(where, std::string("missing key '") + k + "'");
      return n[k].as<int64_t>();
    };
    m.step = i64("step");
    m.epoch = i64("epoch");
    m.samples_consumed = i64("samples_consumed");
    m.optimizer_steps = i64("optimizer_steps");
    m.skipped_steps = i64("skipped_steps");
    m.global_batch = i64("global_batch");
    m.accum_steps = i64("accum_steps");
    m.world_size = static_cast<int>(i64("world_size"));
    m.seed = n["seed"].as<uint64_t>();
    m.backend = n["backend"].as<std::string>();
    m.model = n["model"].as<std::string>();
    m.config_hash = n["config_hash"].as<std::string>();
    m.config_xxh3 = parse_hex64(n["config_xxh3"].as<std::string>(), where + ": config_xxh3");
    m.created = n["created"].as<std::string>("");
    m.best_top1 = n["best_top1"].as<double>(-1);
    m.best_step = n["best_step"].as<int64_t>(-1);
    for (const auto& kv : n["precision"]) {
      const auto k = kv.first.as<std::string>();
      if (k == "backend")
        m.precision = kv.second.as<std::string>();
      else
        m.precision_state[k] = kv.second.as<double>();
    }
    for (const auto& t : n["tensors"]) {
      TensorSpec s;
      s.name = t["name"].as<std::string>();
      const auto d = t["dtype"].as<std::string>();
      if (d != "float32" && d != "float64")
        bad(where, "tensor '" + s.name + "' has dtype '" + d + "' (float32 or float64)");
      s.dtype = d == "float32" ? DType::F32 : DType::F64;
      s.numel = t["numel"].as<int64_t>();
      m.tensors.push_back(s);
    }
    for (const auto& s : n["shards"]) m.shards.push_back(parse_shard(s, where));
    for (const auto& kv : n["layout"]) {
      auto& entries = m.layout[kv.first.as<std::string>()];
      for (const auto& e : kv.second) {
        if (!e.IsSequence() || e.size() != 3)
          bad(where, "a layout entry is not [name, offset, shape]");
        entries.push_back(
            {e[0].as<std::string>(), e[1].as<int64_t>(), e[2].as<std::vector<int64_t>>()});
      }
    }
  } catch (const YAML::Exception& e) {
    bad(where, std::string("malformed: ") + e.what());
  }
  validate(m, where);
  return m;
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  std::ifstream in(path);
  if (!in) throw ManifestError(path + ": missing (the checkpoint was never committed)");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_yaml(ss.str(), path);
}

}  // namespace coatnet::checkpoint
