// coatnet pack SOURCE ...: pack a dataset into HDF5 shards, in parallel under mpirun.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/pack.h"
#include "dist/world.h"
#include "util/text.h"

namespace coatnet::cli {

namespace {

const char* kPackUsage =
    "usage: coatnet pack <source> ...   (coatnet pack <source> --help for its options)\n\n"
    "Pack a dataset into HDF5 shards (PREFIX-00000-of-000NN.h5). Under mpirun each rank writes\n"
    "its own shards; the shards are identical whatever the number of ranks.\n\n"
    "sources:\n"
    "  idx         MNIST/Fashion-MNIST IDX image and label files (gzipped or not)\n";

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
    data::PackResult r;
    std::string error;
    try {
      r = data::pack_idx(p.all("IMAGES")[0], p.all("LABELS")[0], p.all("OUT_PREFIX")[0], o);
    } catch (const std::exception& e) {
      error = e.what();
    }
    // Every rank reaches this point, so one rank's failure cannot leave the others waiting.
    if (world.sum(error.empty() ? 0 : 1) > 0) {
      if (!error.empty()) throw std::runtime_error(error);
      return 1;
    }
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
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kPackUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string source = argv[1];
  if (source == "idx") return pack_idx_command(argc - 1, argv + 1);
  std::fprintf(stderr, "coatnet pack: unknown source '%s'%s\n\n%s", source.c_str(),
               text::did_you_mean(source, {"idx"}).c_str(), kPackUsage);
  return 2;
}

}  // namespace coatnet::cli
