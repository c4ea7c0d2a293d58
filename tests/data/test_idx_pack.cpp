// IDX files -> shards: the packed records equal the source bytes and labels.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/idx.h"
#include "data/pack.h"

using namespace coatnet::data;
namespace fs = std::filesystem;

namespace {

std::string header(uint8_t ndims, std::vector<uint32_t> dims) {
  std::string h{0, 0, 8, static_cast<char>(ndims)};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>(d >> s));
  return h;
}

void write_file(const std::string& path, const std::string& data, bool gz) {
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, data.data(), static_cast<unsigned>(data.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary) << data;
  }
}

class IdxPackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coatnet_idx_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    for (int i = 0; i < n_ * 5 * 4; ++i) pixels_.push_back(static_cast<char>(i * 7 % 251));
    for (int i = 0; i < n_; ++i) labels_.push_back(static_cast<char>(i * 3 % 10));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }
  const int n_ = 23;
  std::string pixels_, labels_;
  fs::path dir_;
};

}  // namespace

TEST_F(IdxPackTest, RoundTripGzippedAndPlain) {
  for (bool gz : {true, false}) {
    write_file(path("img"), header(3, {23, 5, 4}) + pixels_, gz);
    write_file(path("lab"), header(1, {23}) + labels_, gz);
    PackOptions o;
    o.records_per_shard = 5;
    o.progress = false;
    PackResult r = pack_idx(path("img"), path("lab"), path(gz ? "gz/train" : "plain/train"), o);
    EXPECT_EQ(r.shards, 5);
    Dataset ds(expand_globs({path(gz ? "gz/train-*.h5" : "plain/train-*.h5")}));
    ASSERT_EQ(ds.size(), n_);
    EXPECT_EQ(ds.meta().num_classes, 10);
    for (int i = 0; i < n_; ++i) {
      Record rec = ds.read(i);
      EXPECT_EQ(std::string(rec.bytes.begin(), rec.bytes.end()), pixels_.substr(i * 20, 20)) << i;
      EXPECT_EQ(rec.label, labels_[i]);
      EXPECT_EQ(rec.height, 5u);
      EXPECT_EQ(rec.width, 4u);
      EXPECT_EQ(rec.channels, 1u);
    }
  }
}

TEST_F(IdxPackTest, RanksWriteDisjointShardsCoveringAll) {
  write_file(path("img"), header(3, {23, 5, 4}) + pixels_, false);
  write_file(path("lab"), header(1, {23}) + labels_, false);
  std::vector<std::string> all;
  for (int rank = 0; rank < 3; ++rank) {
    PackOptions o;
    o.records_per_shard = 4;
    o.rank = rank;
    o.world = 3;
    o.progress = false;
    auto r = pack_idx(path("img"), path("lab"), path("p/train"), o);
    all.insert(all.end(), r.written.begin(), r.written.end());
  }
  EXPECT_EQ(all.size(), 6u);
  EXPECT_EQ(Dataset(expand_globs({path("p/train-*.h5")})).size(), n_);
}

TEST_F(IdxPackTest, BadInputsAreNamed) {
  auto error = [&](const std::string& img, const std::string& lab, PackOptions o = {}) {
    write_file(path("img"), img, false);
    write_file(path("lab"), lab, false);
    o.progress = false;
    try {
      pack_idx(path("img"), path("lab"), path("bad/train"), o);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string img = header(3, {23, 5, 4}) + pixels_, lab = header(1, {23}) + labels_;
  EXPECT_NE(error("PNG....", lab).find("not an IDX file"), std::string::npos);
  EXPECT_NE(error(img.substr(0, img.size() - 3), lab).find("truncated"), std::string::npos);
  EXPECT_NE(error(img, header(1, {22}) + labels_.substr(1)).find("22 labels for 23 images"),
            std::string::npos);
  PackOptions few;
  few.num_classes = 5;
  std::string e = error(img, lab, few);
  EXPECT_NE(e.find("label 6 of record 2 is out of range for 5 classes"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(path("bad/train-00000-of-00001.h5")));
}

// Found by fuzz_idx: a header may claim far more than the file holds (here 6·2^30 = 6 GiB in
// a 100-byte file, plain and gzipped). The read ends in "truncated" after what is there, without
// first allocating and zeroing what the header claims (which took seconds and could exhaust
// memory). Memory is bounded by the peak resident size of this process staying far below it.
TEST_F(IdxPackTest, AHeaderClaimingMoreThanTheFileHoldsIsTruncatedNotAllocated) {
  // The peak from here on: earlier tests in this process (a whole coatnet_tests run, not one test
  // per process as under ctest) may have peaked above the bound. "5" resets VmHWM (proc(5)).
  std::ofstream("/proc/self/clear_refs") << "5";
  for (bool gz : {false, true}) {
    write_file(path("big"), header(3, {6 << 10, 1 << 10, 1 << 10}) + pixels_.substr(0, 100), gz);
    try {
      read_idx(path("big"));
      FAIL() << "a 6 GiB claim in a 100-byte file was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    }
  }
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) EXPECT_LT(std::stol(line.substr(6)), 4L << 20) << line;
}
