// coatnet ckpt list|verify|info DIR: what a checkpoint directory holds and whether it is sound,
// without LibTorch (only manifests and shard files are read).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "util/json.h"

namespace coatnet::cli {

namespace {

namespace fs = std::filesystem;
namespace ck = coatnet::checkpoint;

const char* kCkptUsage =
    "usage: coatnet ckpt <command> DIR   (coatnet ckpt <command> --help for options)\n\n"
    "DIR is a run's checkpoint directory (RUN_DIR/checkpoints) or one step-… directory in it.\n\n"
    "commands:\n"
    "  list        the step directories: committed or not, size, world size, backend\n"
    "  verify      manifests, shard sizes and XXH3 checksums; exit 1 naming any problem\n"
    "  info        what one checkpoint holds (the newest valid one for a directory)\n";

std::string latest_of(const std::string& root) {
  std::ifstream in(fs::path(root) / "latest");
  std::string name;
  std::getline(in, name);
  return name;
}

int64_t dir_bytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec))
    if (f.is_regular_file()) total += static_cast<int64_t>(f.file_size());
  return total;
}

int list(int argc, char** argv) {
  ArgParser p("ckpt list",
              "List the step directories of a checkpoint directory, oldest first: committed "
              "(manifest present and well-formed) or not (an interrupted save), with size, step, "
              "world size and backend. Checksums are checked by `coatnet ckpt verify`.");
  p.positional("DIR", "checkpoint directory (RUN_DIR/checkpoints)").flag("json", "print JSON");
  return run_command(p, argc, argv, [&] {
    const std::string root = p.get("DIR");
    if (!fs::is_directory(root)) throw std::invalid_argument(root + ": not a directory");
    const std::string latest = latest_of(root);
    json::Value arr = json::Value::array();
    for (const auto& e : ck::list_checkpoints(root)) {
      json::Value v = json::Value::object();
      const std::string name = fs::path(e.dir).filename().string();
      v["dir"] = e.dir;
      v["step"] = e.step;
      v["committed"] = e.committed;
      v["latest"] = name == latest;
      v["bytes"] = dir_bytes(e.dir);
      if (e.committed) {
        ck::Manifest m = ck::read_manifest(e.dir);
        v["world_size"] = m.world_size;
        v["backend"] = m.backend;
        v["epoch"] = m.epoch;
        v["created"] = m.created;
      } else {
        v["problem"] = e.problem;
      }
      if (!p.has("json")) {
        std::printf("%-16s %s %9.1f MB  %s%s\n", name.c_str(),
                    e.committed ? "committed " : "INCOMPLETE", dir_bytes(e.dir) / 1e6,
                    e.committed
                        ? ("world " + std::to_string(v["world_size"].get<int>()) + ", " +
                           v["backend"].get<std::string>() + ", " + v["created"].get<std::string>())
                              .c_str()
                        : e.problem.c_str(),
                    name == latest ? "  <- latest" : "");
      }
      arr.push_back(v);
    }
    if (p.has("json")) std::printf("%s\n", arr.dump(2).c_str());
    return 0;
  });
}

int verify(int argc, char** argv) {
  ArgParser p("ckpt verify",
              "Check checkpoints: every manifest (names, ranges, paths inside the directory), "
              "every shard's size and XXH3 checksum, and config.yaml. DIR is one step-… "
              "directory or a checkpoint directory (all of them). Exit 1 on any problem, naming "
              "the file and what is wrong.");
  p.positional("DIR", "a step-… directory or a checkpoint directory");
  return run_command(p, argc, argv, [&] {
    const std::string dir = p.get("DIR");
    std::vector<std::string> dirs;
    if (ck::is_step_dir(dir)) {
      dirs.push_back(dir);
    } else {
      if (!fs::is_directory(dir)) throw std::invalid_argument(dir + ": not a directory");
      for (const auto& e : ck::list_checkpoints(dir)) dirs.push_back(e.dir);
      if (dirs.empty()) throw std::invalid_argument(dir + ": no step-… directories");
    }
    int bad = 0;
    for (const auto& d : dirs) {
      const std::string problem = ck::check_checkpoint(d, 0, 1);
      if (problem.empty()) {
        std::printf("OK   %s\n", d.c_str());
      } else {
        std::printf("BAD  %s: %s\n", d.c_str(), problem.c_str());
        ++bad;
      }
    }
    std::printf("%zu checkpoint(s), %d with problems\n", dirs.size(), bad);
    return bad ? 1 : 0;
  });
}

int info(int argc, char** argv) {
  ArgParser p("ckpt info",
              "What a checkpoint holds: step, epoch and samples consumed, world size, backend, "
              "model, precision state, tensors and shards. For a checkpoint directory, its "
              "newest valid checkpoint.");
  p.positional("DIR", "a step-… directory or a checkpoint directory").flag("json", "print JSON");
  return run_command(p, argc, argv, [&] {
    std::vector<std::string> skipped;
    const std::string dir = ck::resolve_checkpoint(p.get("DIR"), &skipped);
    for (const auto& s : skipped) std::fprintf(stderr, "skipped %s\n", s.c_str());
    const ck::Manifest m = ck::read_manifest(dir);
    json::Value v = json::Value::object();
    v["dir"] = dir;
    v["step"] = m.step;
    v["epoch"] = m.epoch;
    v["samples_consumed"] = m.samples_consumed;
    v["world_size"] = m.world_size;
    v["backend"] = m.backend;
    v["model"] = m.model;
    v["global_batch"] = m.global_batch;
    v["precision"] = m.precision;
    for (const auto& [k, x] : m.precision_state) v["precision_" + k] = x;
    v["best_top1"] = m.best_top1;
    v["created"] = m.created;
    v["config_hash"] = m.config_hash;
    json::Value tensors = json::Value::object();
    for (const auto& t : m.tensors) tensors[t.name] = t.numel;
    v["tensors"] = tensors;
    json::Value shards = json::Value::array();
    int64_t bytes = 0;
    for (const auto& s : m.shards) {
      json::Value sv = json::Value::object();
      sv["file"] = s.file;
      sv["bytes"] = s.bytes;
      sv["xxh3"] = ck::hex64(s.xxh3);
      shards.push_back(sv);
      bytes += s.bytes;
    }
    v["shards"] = shards;
    v["bytes"] = bytes;
    if (p.has("json")) {
      std::printf("%s\n", v.dump(2).c_str());
      return 0;
    }
    std::printf("%s\n  step %lld (epoch %lld + %lld samples), saved by %d rank(s) with %s\n",
                dir.c_str(), static_cast<long long>(m.step), static_cast<long long>(m.epoch),
                static_cast<long long>(m.samples_consumed), m.world_size, m.backend.c_str());
    std::printf("  model %s, global batch %lld, precision %s, created %s\n", m.model.c_str(),
                static_cast<long long>(m.global_batch), m.precision.c_str(), m.created.c_str());
    for (const auto& t : m.tensors)
      std::printf("  tensor %-12s %12lld %s\n", t.name.c_str(), static_cast<long long>(t.numel),
                  ck::dtype_name(t.dtype));
    for (const auto& s : m.shards)
      std::printf("  shard  %s  %.1f MB  xxh3 %s\n", s.file.c_str(), s.bytes / 1e6,
                  ck::hex64(s.xxh3).c_str());
    return 0;
  });
}

}  // namespace

int cmd_ckpt(int argc, char** argv) {
  return dispatch("ckpt", "command", kCkptUsage, argc, argv,
                  {{"list", list}, {"verify", verify}, {"info", info}});
}

}  // namespace coatnet::cli
