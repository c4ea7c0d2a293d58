// coatnet pack SOURCE ...: pack a dataset into HDF5 shards, in parallel under mpirun.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/pack.h"
#include "dist/world.h"
#include "util/atomic_file.h"
#include "util/text.h"

namespace coatnet::cli {

namespace {

const char* kPackUsage =
    "usage: coatnet pack <source> ...   (coatnet pack <source> --help for its options)\n\n"
    "Pack a dataset into HDF5 shards (PREFIX-00000-of-000NN.h5). Under mpirun each rank writes\n"
    "its own shards; the shards are identical whatever the number of ranks.\n\n"
    "sources:\n"
    "  imagefolder ROOT/CLASS/IMAGE folders, as torchvision's ImageFolder (ImageNet)\n"
    "  jft         a multi-label list: path<TAB>label,label,...[<TAB>weight,...]\n"
    "  idx         MNIST/Fashion-MNIST IDX image and label files (gzipped or not)\n";

// Runs `pack` on every rank; one rank's failure fails all of them with its message, so no
// rank waits forever on the others.
template <typename Fn>
data::PackResult run_on_all_ranks(dist::World& world, Fn pack) {
  data::PackResult r;
  std::string error;
  try {
    r = pack();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (world.sum(error.empty() ? 0 : 1) > 0) {
    if (!error.empty()) throw std::runtime_error(error);
    throw std::runtime_error("another rank failed (see its message)");
  }
  return r;
}

// Rank 0 prints the summary and writes OUT_PREFIX-report.txt naming every skipped and
// converted source, gathered from all ranks.
int report(dist::World& world, const data::PackResult& r, const std::string& prefix,
           const std::vector<std::string>& listing_problems) {
  auto join_lines = [](const std::vector<std::string>& v) { return text::join(v, "\n"); };
  auto skipped = world.gather_strings(join_lines(r.skipped));
  auto converted = world.gather_strings(join_lines(r.converted));
  int64_t records = world.sum(r.records),
          shards = world.sum(static_cast<int64_t>(r.written.size()));
  if (!world.is_root()) return 0;
  std::vector<std::string> skip_lines = listing_problems, conv_lines;
  for (const auto& s : skipped)
    for (auto& l : text::split(s, '\n'))
      if (!l.empty()) skip_lines.push_back(l);
  for (const auto& s : converted)
    for (auto& l : text::split(s, '\n'))
      if (!l.empty()) conv_lines.push_back(l);
  std::string path = prefix + "-report.txt";
  std::string report = "skipped " + std::to_string(skip_lines.size()) + "\n";
  for (const auto& l : skip_lines) report += "  " + l + "\n";
  report += "converted " + std::to_string(conv_lines.size()) + "\n";
  for (const auto& l : conv_lines) report += "  " + l + "\n";
  util::write_text_atomically(path, report);
  std::printf(
      "packed %lld records into %lld shards (%s-*.h5) with %d rank(s); %zu skipped, %zu "
      "converted (listed in %s)\n",
      static_cast<long long>(records), static_cast<long long>(shards), prefix.c_str(), world.size(),
      skip_lines.size(), conv_lines.size(), path.c_str());
  for (size_t i = 0; i < skip_lines.size() && i < 20; ++i)
    std::printf("  skipped %s\n", skip_lines[i].c_str());
  if (skip_lines.size() > 20)
    std::printf("  ... %zu more in %s\n", skip_lines.size() - 20, path.c_str());
  return 0;
}

void add_image_options(ArgParser& p) {
  p.option("records-per-shard", "N", "records in each shard", "1024")
      .option("max-side", "PX", "re-encode images whose longer side exceeds PX; 0 = keep", "0")
      .option("quality", "Q", "JPEG quality of re-encoded images", "90")
      .option("on-bad", "convert|skip",
              "grayscale, CMYK, progressive and PNG sources: convert to RGB JPEG, or skip; "
              "corrupt, empty and non-image files are always skipped; all are reported",
              "convert");
}

data::ImageCheckOptions image_check_options(const ArgParser& p) {
  data::ImageCheckOptions c;
  const std::string& on_bad = p.get("on-bad");
  if (on_bad != "convert" && on_bad != "skip")
    throw UsageError("--on-bad must be convert or skip, got '" + on_bad + "'");
  c.convert = on_bad == "convert";
  c.max_side = p.get_int("max-side");
  c.quality = p.get_int("quality");
  if (c.quality < 1 || c.quality > 100) throw UsageError("--quality must be in [1, 100]");
  return c;
}

int pack_listing_command(int argc, char** argv, bool jft) {
  ArgParser p(jft ? "pack jft" : "pack imagefolder",
              jft ? "Pack a JFT-style multi-label list (paths relative to the list's folder)."
                  : "Pack ROOT/CLASS/IMAGE folders (class = sub-folder name, sorted).");
  p.positional(jft ? "LIST" : "ROOT",
               jft ? "TSV list: path<TAB>labels[<TAB>weights]" : "dataset root")
      .positional("OUT_PREFIX", "shard path prefix, e.g. data/imagenet/train");
  add_image_options(p);
  if (jft) p.required("num-classes", "K", "size of the label set");
  return run_command(p, argc, argv, [&] {
    data::ImageCheckOptions check = image_check_options(p);
    dist::World& world = dist::World::init(argc, argv);
    const std::string src = p.all(jft ? "LIST" : "ROOT")[0], prefix = p.all("OUT_PREFIX")[0];
    data::PackOptions o;
    o.records_per_shard = p.get_int("records-per-shard");
    o.rank = world.rank();
    o.world = world.size();
    data::SourceListing listing;
    data::PackResult r = run_on_all_ranks(world, [&] {
      // Every rank lists the same sorted source, so shard k means the same records everywhere.
      listing = jft ? data::list_jft(src, p.get_int("num-classes")) : data::list_imagefolder(src);
      return data::pack_images(listing, prefix, o, check);
    });
    return report(world, r, prefix, listing.problems);
  });
}

int pack_idx_command(int argc, char** argv) {
  ArgParser p("pack idx", "Pack MNIST-style IDX files into raw-encoded shards (uint8 H x W x 1).");
  p.positional("IMAGES", "IDX image file, e.g. train-images-idx3-ubyte.gz")
      .positional("LABELS", "IDX label file, e.g. train-labels-idx1-ubyte.gz")
      .positional("OUT_PREFIX", "shard path prefix, e.g. data/fashion-mnist/train")
      .option("records-per-shard", "N", "records in each shard", "8192")
      .option("num-classes", "K", "number of classes; 0 = largest label + 1", "0")
      .option("class-names", "A,B,...", "class names, comma-separated, in label order")
      .epilog(
          "example: mpirun -np 2 build/bin/coatnet pack idx \\\n"
          "  /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\\n"
          "  /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz "
          "data/fashion-mnist/train");
  return run_command(p, argc, argv, [&] {
    dist::World& world = dist::World::init(argc, argv);
    data::PackOptions o;
    o.records_per_shard = p.get_int("records-per-shard");
    o.num_classes = p.get_int("num-classes");
    if (p.has("class-names")) o.class_names = text::split(p.get("class-names"), ',');
    o.rank = world.rank();
    o.world = world.size();
    data::PackResult r = run_on_all_ranks(world, [&] {
      return data::pack_idx(p.all("IMAGES")[0], p.all("LABELS")[0], p.all("OUT_PREFIX")[0], o);
    });
    int64_t written = world.sum(static_cast<int64_t>(r.written.size()));
    if (world.is_root())
      std::printf("packed %lld records into %lld shards (%s-*-of-%05lld.h5) with %d rank(s)\n",
                  static_cast<long long>(r.records), static_cast<long long>(written),
                  p.all("OUT_PREFIX")[0].c_str(), static_cast<long long>(r.shards), world.size());
    return 0;
  });
}

}  // namespace

int cmd_pack(int argc, char** argv) {
  return dispatch(
      "pack", "source", kPackUsage, argc, argv,
      {{"idx", pack_idx_command},
       {"imagefolder", [](int c, char** v) { return pack_listing_command(c, v, false); }},
       {"jft", [](int c, char** v) { return pack_listing_command(c, v, true); }}});
}

}  // namespace coatnet::cli
