// The checkpoint format without a training run: manifest validation (every way a manifest can
// lie), shard write/read across segments, size and checksum verification, commit and retention.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "checkpoint/backend.h"
#include "checkpoint/checkpointer.h"
#include "checkpoint/manifest.h"
#include "checkpoint/shard_io.h"
#include "checkpoint/store.h"

namespace ck = coatnet::checkpoint;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/coatnet_ckpt_unit.XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

// A manifest of 10 params split over two shards, plus the other required tensors.
ck::Manifest sample_manifest() {
  ck::Manifest m;
  m.step = 7;
  m.global_batch = 16;
  m.world_size = 2;
  m.backend = "sharded";
  m.model = "custom";
  m.precision = "fp16";
  m.precision_state = {{"scale", 32768}, {"clean_steps", 3}};
  m.tensors = {{"params", ck::DType::F32, 10},
               {"exp_avg", ck::DType::F32, 10},
               {"exp_avg_sq", ck::DType::F32, 10},
               {"buffers", ck::DType::F64, 6}};  // 3 per rank
  ck::ShardFile a{"shard-00000-of-00002.h5", 100, 0x0123456789abcdefull, {}};
  ck::ShardFile b{"shard-00001-of-00002.h5", 100, 42, {}};
  for (const char* t : {"params", "exp_avg", "exp_avg_sq"}) {
    a.segments.push_back({t, 0, 5});
    b.segments.push_back({t, 5, 10});
  }
  a.segments.push_back({"buffers", 0, 6});
  m.shards = {a, b};
  m.layout["params"] = {{"w", 0, {2, 3}}, {"b", 6, {4}}};
  m.layout["buffers"] = {{"running_mean", 0, {3}}};
  return m;
}

void expect_invalid(const ck::Manifest& m, const std::string& message) {
  try {
    ck::validate(m, "test");
    FAIL() << "accepted; expected: " << message;
  } catch (const ck::ManifestError& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(PlaceFlat, MovesEachParameterFromTheSavedOffsetsToTheModels) {
  // Saved packed (a checkpoint from before the flat buffer aligned its parameters); the model's
  // layout pads each one to 16 elements. Every value must land at its own parameter's place.
  const std::vector<ck::LayoutEntry> saved_layout{{"a", 0, {3}}, {"b", 3, {2, 2}}, {"c", 7, {1}}};
  const std::vector<ck::LayoutEntry> model_layout{{"a", 0, {3}}, {"b", 16, {2, 2}}, {"c", 32, {1}}};
  const at::Tensor saved = at::arange(1, 9, at::kFloat);  // a: 1 2 3, b: 4 5 6 7, c: 8
  at::Tensor dst = at::zeros({48}, at::kFloat);
  ck::place_flat(saved, saved_layout, dst, model_layout);
  EXPECT_TRUE(at::equal(dst.narrow(0, 0, 3), saved.narrow(0, 0, 3)));
  EXPECT_TRUE(at::equal(dst.narrow(0, 16, 4), saved.narrow(0, 3, 4)));
  EXPECT_EQ(dst[32].item<float>(), 8.0f);
  EXPECT_EQ(dst.sum().item<float>(), saved.sum().item<float>());  // padding untouched (zero)
  // The same layout on both sides: a plain copy.
  at::Tensor same = at::zeros({8}, at::kFloat);
  ck::place_flat(saved, saved_layout, same, saved_layout);
  EXPECT_TRUE(at::equal(same, saved));
  // An entry that runs past what was saved is an error naming it, not a read out of bounds.
  EXPECT_THROW(ck::place_flat(saved.narrow(0, 0, 6), saved_layout, dst, model_layout),
               ck::ManifestError);
}

TEST(Manifest, RoundTripsThroughYaml) {
  const ck::Manifest m = sample_manifest();
  const ck::Manifest r = ck::from_yaml(ck::to_yaml(m), "test");
  EXPECT_EQ(r.step, 7);
  EXPECT_EQ(r.world_size, 2);
  EXPECT_EQ(r.precision, "fp16");
  EXPECT_EQ(r.precision_state.at("scale"), 32768);
  ASSERT_EQ(r.shards.size(), 2u);
  EXPECT_EQ(r.shards[0].xxh3, 0x0123456789abcdefull);
  EXPECT_EQ(r.shards[1].segments[2].tensor, "exp_avg_sq");
  EXPECT_EQ(r.shards[1].segments[2].begin, 5);
  EXPECT_EQ(r.layout.at("params")[1].shape, std::vector<int64_t>{4});
  EXPECT_EQ(r.tensor("buffers")->dtype, ck::DType::F64);
}

TEST(Manifest, RejectsPathsOutsideTheDirectory) {
  for (const char* bad : {"../escape.h5", "/etc/passwd", "a/b.h5", "..", ""}) {
    ck::Manifest m = sample_manifest();
    m.shards[0].file = bad;
    expect_invalid(m, "is not a plain file name inside the checkpoint directory");
  }
}

TEST(Manifest, RejectsRangesThatDoNotTileEachTensor) {
  ck::Manifest m = sample_manifest();
  m.shards[1].segments[0].end = 11;  // past the end
  expect_invalid(m, "is outside tensor 'params'");
  m = sample_manifest();
  m.shards[1].segments[0].begin = 4;  // overlap
  expect_invalid(m, "ranges overlap");
  m = sample_manifest();
  m.shards[1].segments[0].begin = 6;  // gap
  expect_invalid(m, "no shard holds elements from 5");
  m = sample_manifest();
  m.shards[1].segments.pop_back();  // exp_avg_sq's second half missing
  expect_invalid(m, "tensor 'exp_avg_sq': no shard holds elements from 5");
  m = sample_manifest();
  m.shards[0].segments.push_back({"nonsense", 0, 1});
  expect_invalid(m, "unknown tensor 'nonsense'");
}

TEST(Manifest, RejectsOtherInconsistencies) {
  ck::Manifest m = sample_manifest();
  m.shards[1].file = m.shards[0].file;
  expect_invalid(m, "is repeated or reserved");
  m = sample_manifest();
  m.tensors[1].numel = 8;  // exp_avg shorter than the parameters it is laid out as
  m.shards[1].segments[1].end = 8;
  expect_invalid(m, "entry 'b' at offset 6 runs past tensor 'exp_avg' of 8 elements");
  m = sample_manifest();
  m.layout["buffers"] = {{"running_mean", 0, {4}}};
  expect_invalid(
      m, "entry 'running_mean' at offset 0 runs past tensor 'buffers' of 3 elements per rank");
  m = sample_manifest();
  m.layout["ema_buffers"] = {{"running_mean", 0, {3}}};
  expect_invalid(m, "layout 'ema_buffers' describes no tensor");
  m = sample_manifest();
  m.tensors.clear();
  m.shards.clear();
  expect_invalid(m, "no tensors");
  m = sample_manifest();
  m.world_size = 0;
  expect_invalid(m, "world_size 0");
  m = sample_manifest();
  m.world_size = 1;  // two shards cannot come from one rank
  expect_invalid(m, "2 shard files for a world of 1 ranks (mismatched world size)");
  m = sample_manifest();
  m.shards[1].file = "shard-00001-of-00004.h5";
  expect_invalid(m, "does not belong to a world of 2 ranks");
  m = sample_manifest();
  m.layout["params"].push_back({"too_far", 8, {3}});
  expect_invalid(m, "layout 'params' entry 'too_far' at offset 8 runs past tensor 'params' of 10");
  std::string text = ck::to_yaml(sample_manifest());
  text.replace(text.find("0123456789abcdef"), 16, "0123456789abcdeZ");
  EXPECT_THROW(ck::from_yaml(text, "test"), ck::ManifestError);
  EXPECT_THROW(ck::from_yaml("format: something-else\n", "test"), ck::ManifestError);
  EXPECT_THROW(ck::from_yaml("[1, 2", "test"), ck::ManifestError);
}

TEST(ShardIo, WritesReadsAcrossSegmentsAndVerifies) {
  TempDir tmp;
  std::vector<float> v(1000);
  std::iota(v.begin(), v.end(), 0.5f);
  std::vector<double> bufs{1, 2, 3};
  ck::Manifest m = sample_manifest();
  m.tensors = {{"params", ck::DType::F32, 1000},
               {"exp_avg", ck::DType::F32, 0},
               {"exp_avg_sq", ck::DType::F32, 0},
               {"buffers", ck::DType::F64, 3}};
  m.layout.clear();
  // Three writers of an uneven split, as sharded does at W=3.
  m.world_size = 3;
  m.shards.clear();
  for (int r = 0; r < 3; ++r) {
    const auto [b, e] = ck::even_range(1000, r, 3);
    std::vector<ck::SegmentData> segs{{{"params", b, e}, ck::DType::F32, v.data() + b}};
    if (r == 0) segs.push_back({{"buffers", 0, 3}, ck::DType::F64, bufs.data()});
    m.shards.push_back(ck::write_shard(tmp.path, "s" + std::to_string(r) + ".h5", segs));
  }
  ck::validate(m, "test");
  for (const auto& f : m.shards) EXPECT_NO_THROW(ck::verify_file(tmp.path, f));
  // A range spanning all three shards, as a reader at another world size asks for.
  std::vector<float> out(600);
  ck::read_tensor(tmp.path, m, "params", 200, 800, out.data());
  for (int i = 0; i < 600; ++i) ASSERT_EQ(out[i], v[200 + i]) << i;
  std::vector<double> b(3);
  ck::read_tensor(tmp.path, m, "buffers", 0, 3, b.data());
  EXPECT_EQ(b, bufs);
  EXPECT_THROW(ck::read_tensor(tmp.path, m, "params", 900, 1001, out.data()), ck::ShardError);

  // One flipped byte, then a truncation: each named.
  const fs::path s1 = tmp.path / "s1.h5";
  {
    std::fstream f(s1, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-50, std::ios::end);
    char c;
    f.get(c);
    f.seekp(-50, std::ios::end);
    f.put(static_cast<char>(c ^ 0x10));
  }
  try {
    ck::verify_file(tmp.path, m.shards[1]);
    FAIL() << "flipped byte not detected";
  } catch (const ck::ShardError& e) {
    EXPECT_NE(std::string(e.what()).find("s1.h5: XXH3"), std::string::npos) << e.what();
  }
  fs::resize_file(s1, 100);
  try {
    ck::verify_file(tmp.path, m.shards[1]);
    FAIL() << "truncation not detected";
  } catch (const ck::ShardError& e) {
    EXPECT_NE(std::string(e.what()).find("100 bytes, the manifest says"), std::string::npos);
  }
}

TEST(Store, CommitListAndRetention) {
  TempDir tmp;
  const std::string root = tmp.path.string();
  std::vector<float> v(10, 1.f);
  std::vector<double> bufs{1, 2, 3, 4, 5, 6};  // 3 per rank, 2 ranks
  auto save = [&](int64_t step) {
    const std::string dir = root + "/" + ck::step_dir_name(step);
    fs::create_directories(dir);
    std::ofstream(dir + "/config.yaml") << "model:\n  name: custom\n";
    ck::Manifest m = sample_manifest();
    m.step = step;
    m.shards = {ck::write_shard(dir, "s.h5",
                                {{{"params", 0, 10}, ck::DType::F32, v.data()},
                                 {{"exp_avg", 0, 10}, ck::DType::F32, v.data()},
                                 {{"exp_avg_sq", 0, 10}, ck::DType::F32, v.data()},
                                 {{"buffers", 0, 6}, ck::DType::F64, bufs.data()}})};
    ck::commit(root, dir, m);
  };
  for (int64_t s : {10, 20, 30, 40, 50}) save(s);
  fs::create_directories(root + "/" + ck::step_dir_name(35));  // an interrupted save
  fs::create_directories(root + "/" + ck::step_dir_name(60));  // one still being written
  std::ifstream latest(root + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step-00000050");
  auto entries = ck::list_checkpoints(root);
  ASSERT_EQ(entries.size(), 7u);
  EXPECT_FALSE(entries[3].committed);  // step 35
  EXPECT_NE(entries[3].problem.find("manifest.yaml: missing"), std::string::npos);
  EXPECT_EQ(ck::check_checkpoint(entries[4].dir, 0, 1), "");
  EXPECT_EQ(ck::newest_valid(root), root + "/step-00000050");

  // keep_last 2 and every 20th: 40, 50 (last two), 20, 40 (every 20th); 60 may be in progress.
  ck::prune(root, 2, 20);
  std::vector<int64_t> left;
  for (const auto& e : ck::list_checkpoints(root)) left.push_back(e.step);
  EXPECT_EQ(left, (std::vector<int64_t>{20, 40, 50, 60}));

  // A damaged newest checkpoint is passed over, and the reason given.
  fs::resize_file(root + "/step-00000050/s.h5", 10);
  std::vector<std::string> skipped;
  EXPECT_EQ(ck::newest_valid(root, &skipped), root + "/step-00000040");
  ASSERT_GE(skipped.size(), 2u);
  EXPECT_NE(skipped[1].find("step-00000050: "), std::string::npos) << skipped[1];
}

TEST(Backend, EvenRangesTileEveryTensor) {
  for (int64_t n : {0, 1, 7, 1000, 1001})
    for (int w : {1, 2, 3, 7, 64}) {
      int64_t at = 0;
      for (int r = 0; r < w; ++r) {
        const auto [b, e] = ck::even_range(n, r, w);
        EXPECT_EQ(b, at);
        EXPECT_LE(e - b, (n + w - 1) / w);
        at = e;
      }
      EXPECT_EQ(at, n);
    }
}
