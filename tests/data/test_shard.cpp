// Shard files: round trips, atomic commit, and clear errors for files that are not shards.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/hdf5_util.h"
#include "data/shard.h"

using namespace coatnet::data;
namespace fs = std::filesystem;

namespace {

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coatnet_shard_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }
  static Record record(int i, int label) {
    Record r;
    r.bytes.resize(10 + i % 7);
    for (size_t k = 0; k < r.bytes.size(); ++k) r.bytes[k] = static_cast<uint8_t>(i * 31 + k);
    r.height = 2 + i;
    r.width = 3;
    r.channels = 1;
    r.label = label;
    return r;
  }
  std::string error_opening(const std::string& p) {
    try {
      Shard s(p);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "no error";
  }
  fs::path dir_;
};

}  // namespace

TEST_F(ShardTest, SingleLabelRoundTrip) {
  ShardMeta meta;
  meta.encoding = "raw";
  meta.num_classes = 5;
  meta.class_names = {"a", "b", "c", "d", "e"};
  meta.source = "test";
  ShardWriter w(path("s.h5"), meta);
  for (int i = 0; i < 20; ++i) w.add(record(i, i % 5));
  EXPECT_FALSE(fs::exists(path("s.h5"))) << "nothing visible before commit";
  w.commit();
  EXPECT_FALSE(fs::exists(path("s.h5.tmp")));
  Shard s(path("s.h5"));
  ASSERT_EQ(s.size(), 20);
  EXPECT_EQ(s.meta().class_names, meta.class_names);
  EXPECT_EQ(s.meta().encoding, "raw");
  EXPECT_EQ(checksum_bytes(s), s.bytes_xxh3());
  for (int i = 0; i < 20; ++i) {
    Record r = s.read(i), want = record(i, i % 5);
    EXPECT_EQ(r.bytes, want.bytes) << i;
    EXPECT_EQ(r.height, want.height);
    EXPECT_EQ(r.label, i % 5);
  }
}

TEST_F(ShardTest, MultiLabelWithWeightsRoundTrip) {
  ShardMeta meta;
  meta.num_classes = 100;
  meta.multi_label = true;
  ShardWriter w(path("m.h5"), meta);
  for (int i = 0; i < 6; ++i) {
    Record r = record(i, -1);
    for (int k = 0; k < i; ++k) r.labels.push_back(k * 7);
    if (i == 3) r.label_weights = {0.5f, 0.25f, 1.0f};
    w.add(r);
  }
  w.commit();
  Shard s(path("m.h5"));
  EXPECT_TRUE(s.meta().multi_label);
  EXPECT_EQ(s.read(0).labels.size(), 0u);
  EXPECT_EQ(s.read(4).labels, (std::vector<int32_t>{0, 7, 14, 21}));
  EXPECT_EQ(s.read(3).label_weights, (std::vector<float>{0.5f, 0.25f, 1.0f}));
  EXPECT_EQ(s.read(2).label_weights, (std::vector<float>{1.0f, 1.0f}));  // unweighted = 1
}

// Regressions found by fuzz_shard: contents that lie are refused when the shard is opened, before
// a record is read through them. Each overwrites one dataset of a good multi-label shard in place.
TEST_F(ShardTest, LyingLabelOffsetsAndWeightsAreRefused) {
  auto shard_with = [&](const std::string& name, const std::string& dataset,
                        const std::vector<uint64_t>& values) {
    ShardMeta meta;
    meta.num_classes = 10;
    meta.multi_label = true;
    ShardWriter w(path(name), meta);
    for (int i = 0; i < 3; ++i) {
      Record r = record(i, -1);
      r.labels = {1, 2};
      r.label_weights = {0.5f, 1.0f};
      w.add(r);
    }
    w.commit();
    h5::Id f(H5Fopen(path(name).c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    h5::Id d(H5Dopen2(f, dataset.c_str(), H5P_DEFAULT), H5Dclose);
    H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    return error_opening(path(name));
  };
  // 0, 4, 2, 6: spans the indices, but record 1 would read [4, 2).
  std::string err = shard_with("dec.h5", "/labels/offsets", {0, 4, 2, 6});
  EXPECT_NE(err.find("/labels/offsets decrease at record 1"), std::string::npos) << err;
  err = shard_with("start.h5", "/labels/offsets", {2, 2, 4, 6});
  EXPECT_NE(err.find("/labels/offsets do not span /labels/indices"), std::string::npos) << err;
}

TEST_F(ShardTest, UncommittedWriterLeavesNothing) {
  {
    ShardWriter w(path("gone.h5"), ShardMeta{});
    w.add(record(0, 0));
  }
  EXPECT_FALSE(fs::exists(path("gone.h5")));
  EXPECT_FALSE(fs::exists(path("gone.h5.tmp")));
}

TEST_F(ShardTest, NonShardFilesAreNamedErrors) {
  std::ofstream(path("text.h5")) << "hello";
  EXPECT_NE(error_opening(path("text.h5")).find("text.h5: cannot open as HDF5"), std::string::npos);
  EXPECT_NE(error_opening(path("none.h5")).find("none.h5"), std::string::npos);
  {  // an HDF5 file that is not a shard
    coatnet::data::h5::Id f = coatnet::data::h5::create_file(path("other.h5"));
  }
  std::string err = error_opening(path("other.h5"));
  EXPECT_NE(err.find("no attribute format_version"), std::string::npos) << err;
  EXPECT_NE(err.find("coatnet data inspect"), std::string::npos) << err;
  // A truncated shard never crashes the reader.
  ShardWriter w(path("t.h5"), ShardMeta{});
  for (int i = 0; i < 50; ++i) w.add(record(i, 0));
  w.commit();
  auto size = fs::file_size(path("t.h5"));
  fs::resize_file(path("t.h5"), size / 2);
  EXPECT_NE(error_opening(path("t.h5")), "no error");
}

TEST_F(ShardTest, DatasetSpansShardsInNameOrder) {
  ShardMeta meta;
  meta.num_classes = 3;
  for (int k = 0; k < 3; ++k) {
    ShardWriter w(shard_path(path("d"), k, 3), meta);
    for (int i = 0; i < 4 + k; ++i) w.add(record(100 * k + i, k));
    w.commit();
  }
  Dataset ds(expand_globs({path("d-*.h5")}));
  ASSERT_EQ(ds.size(), 4 + 5 + 6);
  EXPECT_EQ(ds.read(0).bytes, record(0, 0).bytes);
  EXPECT_EQ(ds.read(4).bytes, record(100, 1).bytes);
  EXPECT_EQ(ds.read(14).label, 2);
  EXPECT_THROW(ds.read(15), std::out_of_range);
  EXPECT_THROW(expand_globs({path("nomatch-*.h5")}), std::runtime_error);
  ShardMeta other;
  other.num_classes = 7;
  ShardWriter w(path("x.h5"), other);
  w.add(record(0, 0));
  w.commit();
  EXPECT_THROW(Dataset({shard_path(path("d"), 0, 3), path("x.h5")}), std::runtime_error);
}

namespace {

class Hdf5CheckTest : public ShardTest {};

}  // namespace

TEST_F(Hdf5CheckTest, AFailedWriteNamesTheCallSourceFileDataFileAndHost) {
  const std::string p = path("readonly.h5");
  h5::create_file(p);           // created and closed
  h5::Id f = h5::open_file(p);  // read-only: a write must fail
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  try {
    h5::write_int_attr(f, "records", 7);
    FAIL() << "an attribute was written into a file opened read-only";
  } catch (const h5::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("HDF5 error at src/data/hdf5_util.cpp:"), std::string::npos) << m;
    EXPECT_NE(m.find(" on " + std::string(host) + ")"), std::string::npos) << m;
    EXPECT_NE(m.find(p + ": creating attribute records: H5Acreate2("), std::string::npos) << m;
    // HDF5's own message from the bottom of its error stack must be in it.
    EXPECT_EQ(m.find("no message on HDF5's error stack"), std::string::npos) << m;
    std::printf("the message: %s\n", m.c_str());
  }
}
