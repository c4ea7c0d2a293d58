#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "data/pack.h"
#include "util/progress.h"
#include "util/text.h"

namespace coatnet::data {

namespace fs = std::filesystem;

namespace {

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> kExt{".jpg", ".jpeg", ".png",  ".ppm", ".bmp",
                                          ".pgm", ".tif",  ".tiff", ".webp"};
  return kExt.count(ext) > 0;
}

bool read_file(const std::string& path, std::vector<uint8_t>* out, std::string* why) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *why = "unreadable: " + std::string(std::strerror(errno));
    return false;
  }
  out->assign(std::istreambuf_iterator<char>(f), {});
  if (f.bad()) {
    *why = "read error";
    return false;
  }
  return true;
}

}  // namespace

SourceListing list_imagefolder(const std::string& root) {
  if (!fs::is_directory(root))
    throw std::runtime_error(root + ": not a directory (expected ROOT/CLASS/IMAGE files)");
  SourceListing out;
  out.source = "imagefolder:" + fs::path(root).filename().string();
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) out.class_names.push_back(e.path().filename().string());
  std::sort(out.class_names.begin(), out.class_names.end());
  if (out.class_names.empty()) throw std::runtime_error(root + ": no class folders");
  out.num_classes = static_cast<int64_t>(out.class_names.size());
  for (size_t c = 0; c < out.class_names.size(); ++c) {
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(fs::path(root) / out.class_names[c])) {
      if (e.is_directory()) continue;
      if (has_image_extension(e.path()))
        files.push_back(e.path().string());
      else
        ++out.ignored_files;
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) out.entries.push_back({f, static_cast<int32_t>(c), {}, {}});
  }
  if (out.ignored_files > 0)
    out.problems.push_back(root + ": " + std::to_string(out.ignored_files) +
                           " file(s) without an image extension were not packed");
  return out;
}

SourceListing list_jft(const std::string& list_path, int64_t num_classes) {
  if (num_classes < 1) throw std::invalid_argument("pack jft needs --num-classes K (K >= 1)");
  std::ifstream f(list_path);
  if (!f) throw std::runtime_error(list_path + ": cannot open");
  SourceListing out;
  out.multi_label = true;
  out.num_classes = num_classes;
  out.source = "jft:" + fs::path(list_path).filename().string();
  const fs::path base = fs::path(list_path).parent_path();
  std::set<std::string> seen;
  std::string line;
  for (int64_t lineno = 1; std::getline(f, line); ++lineno) {
    if (line.empty() || line[0] == '#') continue;
    std::string where = list_path + ":" + std::to_string(lineno);
    auto cols = text::split(line, '\t');
    if (cols.size() < 2 || cols.size() > 3 || cols[0].empty()) {
      out.problems.push_back(where + ": expected path<TAB>labels[<TAB>weights], skipped");
      continue;
    }
    ImageEntry e;
    e.path = (base / cols[0]).string();
    bool ok = true;
    std::string why;
    for (const auto& l : text::split(cols[1], ',')) {
      char* end = nullptr;
      long v = std::strtol(l.c_str(), &end, 10);
      if (l.empty() || *end != '\0')
        ok = false, why = "label '" + l + "' is not an integer";
      else if (v < 0 || v >= num_classes)
        ok = false, why = "label " + l + " outside [0, " + std::to_string(num_classes) + ")";
      else
        e.labels.push_back(static_cast<int32_t>(v));
    }
    if (ok && cols.size() == 3) {
      for (const auto& x : text::split(cols[2], ',')) {
        char* end = nullptr;
        float v = std::strtof(x.c_str(), &end);
        if (x.empty() || *end != '\0') ok = false, why = "weight '" + x + "' is not a number";
        e.weights.push_back(v);
      }
      if (ok && e.weights.size() != e.labels.size())
        ok = false, why = "weights and labels differ in count";
    }
    if (ok && !seen.insert(e.path).second) ok = false, why = "duplicate path " + cols[0];
    if (!ok) {
      out.problems.push_back(where + ": " + why + ", skipped");
      continue;
    }
    out.entries.push_back(std::move(e));
  }
  return out;
}

PackResult pack_images(const SourceListing& listing, const std::string& out_prefix,
                       const PackOptions& o, const ImageCheckOptions& check) {
  if (o.records_per_shard < 1)
    throw std::invalid_argument("--records-per-shard " + std::to_string(o.records_per_shard));
  const int64_t n = static_cast<int64_t>(listing.entries.size());
  if (n == 0) throw std::runtime_error("nothing to pack: the source lists no images");
  ShardMeta meta;
  meta.encoding = "jpeg";
  meta.num_classes = listing.num_classes;
  meta.class_names = listing.class_names;
  meta.source = listing.source;
  meta.multi_label = listing.multi_label;
  auto parent = fs::path(out_prefix).parent_path();
  if (!parent.empty()) fs::create_directories(parent);

  PackResult result;
  result.shards = (n + o.records_per_shard - 1) / o.records_per_shard;
  ImageChecker checker(check);
  std::vector<uint8_t> bytes;
  util::Progress progress(o.progress && o.rank == 0, util::Progress::Style::Lines, stderr, "pack");
  for (int64_t k = o.rank; k < result.shards; k += o.world) {
    ShardWriter writer(shard_path(out_prefix, k, result.shards), meta);
    const int64_t end = std::min(n, (k + 1) * o.records_per_shard);
    for (int64_t i = k * o.records_per_shard; i < end; ++i) {
      const ImageEntry& e = listing.entries[i];
      std::string why;
      if (!read_file(e.path, &bytes, &why)) {
        result.skipped.push_back(e.path + ": " + why);
        continue;
      }
      CheckedImage img = checker.check(bytes);
      if (img.skipped) {
        result.skipped.push_back(e.path + ": " + img.note);
        continue;
      }
      if (!img.note.empty()) result.converted.push_back(e.path + ": " + img.note);
      Record r;
      r.bytes = std::move(img.jpeg);
      r.height = static_cast<uint32_t>(img.height);
      r.width = static_cast<uint32_t>(img.width);
      r.channels = 3;
      r.label = e.label;
      r.labels = e.labels;
      r.label_weights = e.weights;
      writer.add(std::move(r));
    }
    result.records += static_cast<int64_t>(writer.size());
    writer.commit();
    result.written.push_back(shard_path(out_prefix, k, result.shards));
    // Rank 0 sees its own shards only; ranks advance in step, so this estimates the whole.
    progress.count(std::min(n, (k + o.world) * o.records_per_shard), n, "images");
  }
  return result;
}

}  // namespace coatnet::data
