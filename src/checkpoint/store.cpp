#include "checkpoint/store.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "checkpoint/shard_io.h"
#include "util/atomic_file.h"

namespace coatnet::checkpoint {

namespace fs = std::filesystem;

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

namespace {

int64_t parse_step(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return -1;
  const std::string digits = name.substr(5);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

bool is_step_dir(const std::string& path) {
  return parse_step(fs::path(path).lexically_normal().filename().string()) >= 0 ||
         fs::exists(fs::path(path) / kManifestName);
}

std::vector<Entry> list_checkpoints(const std::string& root) {
  std::vector<Entry> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& d : fs::directory_iterator(root, ec)) {
    const int64_t step = parse_step(d.path().filename().string());
    if (step < 0 || !d.is_directory()) continue;
    Entry e;
    e.dir = d.path().string();
    e.step = step;
    try {
      Manifest m = read_manifest(e.dir);
      if (m.step != step)
        e.problem = "manifest step " + std::to_string(m.step) + " differs from the directory name";
      e.committed = e.problem.empty();
    } catch (const std::exception& ex) {
      e.problem = ex.what();
    }
    out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.step < b.step; });
  return out;
}

std::string check_checkpoint(const std::string& dir, int rank, int world) {
  try {
    Manifest m = read_manifest(dir);
    for (size_t i = static_cast<size_t>(rank); i < m.shards.size(); i += static_cast<size_t>(world))
      verify_file(dir, m.shards[i]);
    if (rank == 0) {
      const std::string cfg = dir + "/" + kConfigName;
      std::error_code ec;
      if (!fs::is_regular_file(cfg, ec)) return cfg + ": missing";
      if (hash_file(cfg) != m.config_xxh3)
        return cfg + ": XXH3 differs from the manifest's (the file is corrupt)";
    }
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string newest_valid(const std::string& root, std::vector<std::string>* skipped,
                         const ProblemFn& check) {
  const ProblemFn problem_of =
      check ? check : [](const std::string& dir) { return check_checkpoint(dir, 0, 1); };
  const std::vector<Entry> entries = list_checkpoints(root);
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const std::string problem = it->committed ? problem_of(it->dir) : it->problem;
    if (problem.empty()) return it->dir;
    if (skipped) skipped->push_back(it->dir + ": " + problem);
  }
  return "";
}

std::string resolve_checkpoint(const std::string& path, std::vector<std::string>* skipped) {
  if (is_step_dir(path)) return path;
  const std::string dir = newest_valid(path, skipped);
  if (dir.empty())
    throw std::invalid_argument(path + ": no valid checkpoint (`coatnet ckpt list " + path +
                                "` shows what is there)");
  return dir;
}

void commit(const std::string& root, const std::string& dir, Manifest manifest) {
  manifest.config_xxh3 = hash_file(dir + "/" + kConfigName, nullptr, /*fsync_too=*/true);
  validate(manifest, dir);
  // Each fsyncs its directory too: the manifest's rename is on disk before `latest` names it.
  util::write_text_atomically(dir + "/" + kManifestName, to_yaml(manifest));
  util::write_text_atomically(root + "/latest", fs::path(dir).filename().string() + "\n");
}

std::vector<std::string> prune(const std::string& root, int64_t keep_last, int64_t keep_every) {
  std::vector<Entry> all = list_checkpoints(root);
  std::vector<std::string> removed;
  int64_t newest = -1;
  for (const auto& e : all)
    if (e.committed) newest = std::max(newest, e.step);
  int64_t recent = 0;  // committed checkpoints seen so far, newest first
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    bool keep;
    if (!it->committed) {
      keep = it->step > newest;  // a save may still be in progress there
    } else {
      keep = recent < keep_last || it->step == newest ||
             (keep_every > 0 && it->step % keep_every == 0);
      ++recent;
    }
    if (keep) continue;
    std::error_code ec;
    fs::remove_all(it->dir, ec);
    removed.push_back(it->dir);
  }
  return removed;
}

}  // namespace coatnet::checkpoint
