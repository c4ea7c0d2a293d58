// coatnet data inspect|verify FILES...: what a packed dataset holds, and whether every record
// of it is sound.
#include <turbojpeg.h>

#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "util/json.h"
#include "util/text.h"

namespace coatnet::cli {

namespace {

const char* kDataUsage =
    "usage: coatnet data <command> FILES...   (coatnet data <command> --help for options)\n\n"
    "commands:\n"
    "  inspect     records, classes, image sizes and encoding of shard files\n"
    "  verify      decode every record, check offsets, labels and checksums\n"
    "  bench       training-transform throughput of the loader (images/s)\n";

int inspect(int argc, char** argv) {
  ArgParser p("data inspect",
              "Show what shard files hold: records (key records), classes, "
              "image sizes, encoding, bytes.");
  p.positional("FILES", "shard files or globs", true)
      .flag("json", "print one JSON object on stdout");
  return run_command(p, argc, argv, [&] {
    data::Dataset ds(data::expand_globs(p.all("FILES")));
    const auto& m = ds.meta();
    uint32_t min_h = UINT32_MAX, max_h = 0, min_w = UINT32_MAX, max_w = 0;
    uint64_t bytes = 0;
    std::map<int32_t, int64_t> per_class;
    for (const auto& s : ds.shards()) {
      bytes += s->bytes_size();
      for (int64_t i = 0; i < s->size(); ++i) {
        min_h = std::min(min_h, s->height(i));
        max_h = std::max(max_h, s->height(i));
        min_w = std::min(min_w, s->width(i));
        max_w = std::max(max_w, s->width(i));
        if (!m.multi_label) ++per_class[s->label(i)];
      }
    }
    if (ds.size() == 0) min_h = min_w = 0;
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["files"] = static_cast<int64_t>(ds.shards().size());
      out["records"] = ds.size();
      out["num_classes"] = m.num_classes;
      json::Value names = json::Value::array();
      for (const auto& n : m.class_names) names.push_back(n);
      out["class_names"] = names;
      out["multi_label"] = m.multi_label;
      out["encoding"] = m.encoding;
      out["bytes"] = bytes;
      out["height"] = json::Value::array();
      out["height"].push_back(static_cast<int64_t>(min_h));
      out["height"].push_back(static_cast<int64_t>(max_h));
      out["width"] = json::Value::array();
      out["width"].push_back(static_cast<int64_t>(min_w));
      out["width"].push_back(static_cast<int64_t>(max_w));
      json::Value counts = json::Value::object();
      for (auto [c, k] : per_class) counts[std::to_string(c)] = k;
      out["per_class"] = counts;
      out["source"] = m.source;
      std::puts(out.dump().c_str());
      return 0;
    }
    std::printf("%zu file(s), %s records, %lld classes%s, encoding %s, %.1f MB\n",
                ds.shards().size(), text::thousands(ds.size()).c_str(),
                static_cast<long long>(m.num_classes), m.multi_label ? " (multi-label)" : "",
                m.encoding.c_str(), bytes / 1e6);
    std::printf("image height %u-%u, width %u-%u; source %s\n", min_h, max_h, min_w, max_w,
                m.source.c_str());
    for (auto [c, k] : per_class)
      std::printf("  class %d%s: %lld\n", c,
                  c >= 0 && c < static_cast<int32_t>(m.class_names.size())
                      ? (" (" + m.class_names[c] + ")").c_str()
                      : "",
                  static_cast<long long>(k));
    return 0;
  });
}

// Checks one record; returns "" when sound.
std::string check_record(const data::Shard& s, int64_t i, tjhandle tj, std::vector<uint8_t>* buf,
                         std::vector<uint8_t>* pixels) {
  s.read_bytes(i, buf);
  const auto& m = s.meta();
  const uint64_t h = s.height(i), w = s.width(i), c = s.channels(i);
  if (m.encoding == "raw") {
    if (buf->size() != h * w * c)
      return std::to_string(buf->size()) + " bytes for a raw " + std::to_string(h) + "x" +
             std::to_string(w) + "x" + std::to_string(c) + " image";
  } else {
    int jw = 0, jh = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(tj, buf->data(), buf->size(), &jw, &jh, &sub, &cs) != 0)
      return std::string("not a readable JPEG: ") + tjGetErrorStr2(tj);
    if (static_cast<uint64_t>(jw) != w || static_cast<uint64_t>(jh) != h)
      return "JPEG is " + std::to_string(jw) + "x" + std::to_string(jh) + ", shape says " +
             std::to_string(w) + "x" + std::to_string(h);
    pixels->resize(static_cast<size_t>(jw) * jh * 3);
    if (tjDecompress2(tj, buf->data(), buf->size(), pixels->data(), jw, 0, jh, TJPF_RGB, 0) != 0)
      return std::string("JPEG does not decode: ") + tjGetErrorStr2(tj);
  }
  if (!m.multi_label && (s.label(i) < 0 || s.label(i) >= m.num_classes))
    return "label " + std::to_string(s.label(i)) + " outside [0, " + std::to_string(m.num_classes) +
           ")";
  if (m.multi_label)
    for (int32_t l : s.read(i).labels)
      if (l < 0 || l >= m.num_classes)
        return "label " + std::to_string(l) + " outside [0, " + std::to_string(m.num_classes) + ")";
  return "";
}

int verify(int argc, char** argv) {
  ArgParser p("data verify",
              "Decode every record and check offsets, shapes, labels and the "
              "per-shard XXH3 checksum. Exit 1 on any problem, naming the record.");
  p.positional("FILES", "shard files or globs", true);
  return run_command(p, argc, argv, [&] {
    int problems = 0;
    int64_t records = 0;
    tjhandle tj = tjInitDecompress();
    std::vector<uint8_t> buf, pixels;
    for (const auto& f : data::expand_globs(p.all("FILES"))) {
      std::unique_ptr<data::Shard> s;
      try {
        s = std::make_unique<data::Shard>(f);  // validates the structure
      } catch (const std::exception& e) {
        std::fprintf(stderr, "BAD %s\n", e.what());
        ++problems;
        continue;
      }
      if (data::checksum_bytes(*s) != s->bytes_xxh3()) {
        std::fprintf(stderr, "BAD %s: /images/bytes checksum differs from bytes_xxh3 (corrupt)\n",
                     f.c_str());
        ++problems;
      }
      for (int64_t i = 0; i < s->size(); ++i, ++records) {
        std::string why = check_record(*s, i, tj, &buf, &pixels);
        if (!why.empty()) {
          std::fprintf(stderr, "BAD %s: record %lld: %s\n", f.c_str(), static_cast<long long>(i),
                       why.c_str());
          ++problems;
        }
      }
    }
    tjDestroy(tj);
    std::printf("verified %lld records: %d problem(s)\n", static_cast<long long>(records),
                problems);
    return problems ? 1 : 0;
  });
}

int bench(int argc, char** argv) {
  ArgParser p("data bench",
              "Training-transform throughput of the loader (decode, RandomResizedCrop, flip, "
              "normalize) as key images_per_s, against the ceiling: full-size decode of the "
              "same JPEG records on one core, measured before and after the loader and "
              "averaged (ceiling_before_after).");
  p.positional("FILES", "shard files or globs", true)
      .option("threads", "N", "decode threads", "1")
      .option("batch", "B", "images per batch", "64")
      .option("batches", "K", "timed batches", "20")
      .option("size", "S", "output size", "224")
      .option("randaugment", "N,M", "also RandAugment with N ops at magnitude M, e.g. 2,15", "0,0")
      .flag("uint8", "uint8 batches (normalised later, e.g. on the GPU) instead of float")
      .flag("json", "print one JSON object on stdout");
  return run_command(p, argc, argv, [&] {
    at::set_num_threads(1);  // the loader has its own threads; keep ATen from adding more
    data::LoaderOptions o;
    o.normalize = !p.has("uint8");
    o.files = data::expand_globs(p.all("FILES"));
    o.threads = p.get_int("threads");
    o.sampler.global_batch = p.get_int("batch");
    o.transform.size = p.get_int("size");
    auto ra = text::split(p.get("randaugment"), ',');
    if (ra.size() != 2) throw UsageError("--randaugment expects N,M, e.g. 2,15");
    o.transform.randaugment_n = std::stoi(ra[0]);
    o.transform.randaugment_m = std::stoi(ra[1]);
    const int batches = p.get_int("batches");
    // The ceiling: full-size decode of up to 500 records on this one core, while no loader
    // thread competes. Measured before and after the loader and averaged, so that drift in the
    // machine's speed (±10% on a VM) does not land on one side of the ratio.
    data::Dataset probe(o.files);
    const std::string encoding = probe.meta().encoding;
    auto full_decode_rate = [&] {
      data::Decoder dec;
      std::vector<uint8_t> buf;
      int64_t n = std::min<int64_t>(probe.size(), 500);
      for (int64_t i = 0; i < n; ++i) {  // warm the page cache
        auto [shard, j] = probe.locate(i);
        shard->read_bytes(j, &buf);
      }
      auto c0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < n; ++i) {
        auto [shard, j] = probe.locate(i);
        shard->read_bytes(j, &buf);
        dec.decode_full(buf);
      }
      return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
    };
    std::vector<double> ceilings;
    if (encoding == "jpeg") ceilings.push_back(full_decode_rate());
    double s = 0, wait_s = 0;
    int64_t records = 0;
    {
      data::Loader loader(o);
      // Warm-up: page cache, thread start, and the heap: until every batch in flight has been
      // allocated once, each new batch is fresh memory the kernel must fault in and zero (a
      // tenth of a 20-batch run, measured), which a training run pays only at its start.
      for (int i = 0; i < o.prefetch + 2; ++i) loader.next();
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < batches; ++i) loader.next();
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      wait_s = loader.total_wait_seconds();
      records = loader.dataset().size();
    }  // the loader's prefetching threads stop here
    if (encoding == "jpeg") ceilings.push_back(full_decode_rate());
    const double ceiling =
        ceilings.empty() ? 0
                         : std::accumulate(ceilings.begin(), ceilings.end(), 0.0) / ceilings.size();
    double ips = static_cast<double>(batches) * o.sampler.global_batch / s;
    double per_thread = ips / o.threads;
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["records"] = records;
      out["encoding"] = encoding;
      out["threads"] = o.threads;
      out["batch"] = o.sampler.global_batch;
      out["size"] = o.transform.size;
      out["randaugment"] = p.get("randaugment");
      out["dtype"] = o.normalize ? "float32" : "uint8";
      out["images_per_s"] = ips;
      out["images_per_s_per_thread"] = per_thread;
      if (ceiling > 0) {
        out["ceiling_full_decode_images_per_s_one_core"] = ceiling;
        out["ceiling_before_after"] = json::Value::array();
        for (double c : ceilings) out["ceiling_before_after"].push_back(c);
        out["per_core_vs_ceiling"] = per_thread / ceiling;
      }
      out["loader_wait_s"] = wait_s;
      std::puts(out.dump().c_str());
    } else {
      std::printf("%.1f images/s with %d thread(s) (%.1f per thread)", ips, o.threads, per_thread);
      if (ceiling > 0)
        std::printf("; full-size decode ceiling %.1f images/s on one core (ratio %.2f)", ceiling,
                    per_thread / ceiling);
      std::printf("\n");
    }
    return 0;
  });
}

}  // namespace

int cmd_data(int argc, char** argv) {
  return dispatch("data", "command", kDataUsage, argc, argv,
                  {{"inspect", inspect}, {"verify", verify}, {"bench", bench}});
}

}  // namespace coatnet::cli
