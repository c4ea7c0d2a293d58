// Packing sources into shards, in parallel: with W ranks, rank r writes shards r, r+W, ...;
// shard k always holds records [k·R, (k+1)·R) of the source order, so the files are the same
// whatever the number of ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/image_check.h"
#include "data/shard.h"

namespace coatnet::data {

struct PackOptions {
  int64_t records_per_shard = 1024;
  int64_t num_classes = 0;  // 0: max label + 1
  std::vector<std::string> class_names;
  int rank = 0, world = 1;
  bool progress = true;  // rank 0 prints progress with an ETA to stderr
};

struct PackResult {
  int64_t records = 0;               // in the whole dataset (IDX), or packed by this rank (images)
  int64_t shards = 0;                // in the whole dataset
  std::vector<std::string> written;  // by this rank
  std::vector<std::string> skipped;  // "path: reason" (this rank's share)
  std::vector<std::string> converted;  // "path: what was done" (this rank's share)
};

// One source image with its label(s); paths are absolute or relative to the working directory.
struct ImageEntry {
  std::string path;
  int32_t label = -1;
  std::vector<int32_t> labels;
  std::vector<float> weights;
};

struct SourceListing {
  std::vector<ImageEntry> entries;  // in dataset order
  std::vector<std::string> class_names;
  int64_t num_classes = 0;
  bool multi_label = false;
  std::string source;
  std::vector<std::string> problems;  // entries dropped while listing (duplicates, bad lines)
  int64_t ignored_files = 0;          // files without an image extension (ImageFolder)
};

// torchvision's ImageFolder: class = sub-folder name (sorted), images found recursively in
// sorted order, by extension (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp, any case).
SourceListing list_imagefolder(const std::string& root);
// Lines "path<TAB>label,label,...[<TAB>weight,weight,...]", paths relative to the list's folder.
SourceListing list_jft(const std::string& list_path, int64_t num_classes);

// Packs a listing into JPEG shards; shard k holds entries [k·R, (k+1)·R) minus skipped ones.
PackResult pack_images(const SourceListing& listing, const std::string& out_prefix,
                       const PackOptions& options, const ImageCheckOptions& check);

// MNIST/Fashion-MNIST IDX image + label files -> raw-encoded (uint8 HxWx1) shards.
PackResult pack_idx(const std::string& images, const std::string& labels,
                    const std::string& out_prefix, const PackOptions& options);

}  // namespace coatnet::data
