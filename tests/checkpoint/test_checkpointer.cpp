// The Checkpointer on a fake two-tensor state (checkpoint/state.h), under real MPI at the world
// sizes coatnet_dist_tests runs at (1, 2, 3): a save commits and loads back bit-exactly, every
// rank's own row included; an async save keeps the snapshot of the moment it was asked for; a
// state of another layout, or one lacking a tensor, is refused before anything changes; a
// damaged newest checkpoint is skipped for the previous one. Resharding across world sizes is
// exercised end to end by ckpt_reshard.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "checkpoint/checkpointer.h"
#include "checkpoint/store.h"
#include "dist/comm.h"
#include "dist/test_world.h"

using namespace coatnet;
namespace fs = std::filesystem;

namespace {

// Two parameters a [3] and b [2, 2] in one flat tensor "w" (b aligned at 4, as FlatParams pads),
// a second flat tensor "m" of the same layout, and one per-rank tensor whose values say the rank.
struct FakeState {
  at::Tensor w = at::zeros({8}), m = at::zeros({8}), stats = at::zeros({2}, at::kDouble);
  std::string missing_note;
  checkpoint::State state(bool m_optional = false) {
    checkpoint::State s;
    s.layout = {{"a", 0, {3}}, {"b", 4, {2, 2}}};
    s.flat.push_back({"w", w, nullptr});
    checkpoint::IfMissing fill_m;
    if (m_optional)
      fill_m = [this] {
        m.copy_(w);
        return missing_note = "no m: copied from w";
      };
    s.flat.push_back({"m", m, fill_m});
    s.per_rank.push_back({"stats", {{"s", stats}}, nullptr});
    s.optimizer_steps = 5;
    s.precision = "fake";
    s.precision_state = {{"scale", 2.0}};
    return s;
  }
  void fill(float base) {
    const int r = test_world().rank();
    w.copy_(at::arange(8, at::kFloat) + base);
    m.copy_(at::arange(8, at::kFloat) * 0.5 + base);
    stats.copy_(at::tensor({100.0 * r, 100.0 * r + 1}, at::kDouble));
  }
};

class CheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dist::World& world = test_world();
    const int64_t pid = world.sum(world.is_root() ? ::getpid() : 0);
    root_ = (fs::temp_directory_path() / ("coatnet_ckpt_unit_" + std::to_string(pid))).string();
    dist::CommOptions o;
    o.timeout_s = 60;
    comm_ = dist::make_comm("mpi", world, o, false);
  }
  void TearDown() override {
    test_world().barrier();
    if (test_world().is_root()) fs::remove_all(root_);
  }
  std::unique_ptr<checkpoint::Checkpointer> make(bool async) {
    checkpoint::CheckpointOptions o;
    o.root = root_;
    o.backend = "sharded";
    o.async = async;
    o.config_text = "model:\n  name: fake\n";
    o.model = "fake";
    o.global_batch = 1;
    return std::make_unique<checkpoint::Checkpointer>(
        o, test_world(), *comm_, [this](const std::string& line) { log_ += line + "\n"; });
  }
  std::string root_, log_;
  std::unique_ptr<dist::Comm> comm_;
};

TEST_F(CheckpointerTest, SavesCommitsAndLoadsBackBitExactly) {
  FakeState f;
  f.fill(1);
  auto ckpt = make(false);
  ckpt->save({3, 1, 30}, f.state());
  const at::Tensor w = f.w.clone(), m = f.m.clone(), stats = f.stats.clone();
  EXPECT_TRUE(fs::exists(fs::path(root_) / "latest"));

  FakeState g;  // everything zero, and other numbers
  checkpoint::State s = g.state();
  s.optimizer_steps = 0;
  s.precision_state.clear();
  const auto dir = ckpt->find("auto");
  ASSERT_TRUE(dir.has_value());
  const checkpoint::Manifest manifest = ckpt->load(*dir, s);
  EXPECT_EQ(manifest.step, 3);
  EXPECT_EQ(manifest.world_size, test_world().size());
  EXPECT_TRUE(at::equal(g.w, w));
  EXPECT_TRUE(at::equal(g.m, m));
  EXPECT_TRUE(at::equal(g.stats, stats));  // this rank's own row
  EXPECT_EQ(s.optimizer_steps, 5);
  EXPECT_EQ(s.precision, "fake");
  EXPECT_EQ(s.precision_state.at("scale"), 2.0);
}

TEST_F(CheckpointerTest, AsyncSaveKeepsTheSnapshotOfItsMoment) {
  FakeState f;
  f.fill(1);
  const at::Tensor w = f.w.clone();
  auto ckpt = make(true);
  ckpt->save({4}, f.state());
  ckpt->before_update();  // the snapshot is taken: the "optimizer" may now change the weights
  f.w.add_(1000);
  ckpt->finish();
  FakeState g;
  checkpoint::State s = g.state();
  ckpt->load(*ckpt->find("auto"), s);
  EXPECT_TRUE(at::equal(g.w, w)) << "the async save wrote weights changed after before_update()";
}

TEST_F(CheckpointerTest, RefusesAnotherLayoutOrAMissingTensorBeforeChangingAnything) {
  FakeState f;
  f.fill(1);
  auto ckpt = make(false);
  checkpoint::State only_w = f.state();
  only_w.flat.pop_back();  // saved without "m"
  ckpt->save({5}, only_w);
  const auto dir = ckpt->find("auto");
  ASSERT_TRUE(dir.has_value());

  FakeState g;
  checkpoint::State other = g.state();
  other.layout[1].shape = {4};  // b is [4] in this "model"
  try {
    ckpt->load(*dir, other);
    ADD_FAILURE() << "another layout was loaded";
  } catch (const checkpoint::ManifestError& e) {
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(g.w.count_nonzero().item<int64_t>(), 0) << "a refused load changed the state";

  checkpoint::State strict = g.state();  // "m" required
  try {
    ckpt->load(*dir, strict);
    ADD_FAILURE() << "a checkpoint without 'm' was loaded";
  } catch (const checkpoint::ManifestError& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor 'm'"), std::string::npos) << e.what();
  }

  checkpoint::State lenient = g.state(/*m_optional=*/true);
  ckpt->load(*dir, lenient);
  EXPECT_TRUE(at::equal(g.m, f.w)) << "if_missing did not run after 'w' was loaded";
  if (test_world().is_root())
    EXPECT_NE(log_.find("[resume] no m: copied from w"), std::string::npos) << log_;
}

TEST_F(CheckpointerTest, ADamagedNewestCheckpointIsSkippedForThePreviousOne) {
  FakeState f;
  f.fill(1);
  auto ckpt = make(false);
  ckpt->save({1}, f.state());
  f.fill(2);
  ckpt->save({2}, f.state());
  test_world().barrier();
  if (test_world().is_root()) {  // one byte of the newest step's first shard
    for (const auto& e : fs::directory_iterator(fs::path(root_) / checkpoint::step_dir_name(2)))
      if (e.path().filename().string().rfind("shard-00000", 0) == 0) {
        std::fstream s(e.path(), std::ios::in | std::ios::out | std::ios::binary);
        s.seekp(static_cast<std::streamoff>(fs::file_size(e.path()) / 2));
        char c = 0;
        s.read(&c, 1);
        s.seekp(static_cast<std::streamoff>(fs::file_size(e.path()) / 2));
        c = static_cast<char>(c ^ 0x5a);
        s.write(&c, 1);
      }
  }
  test_world().barrier();
  const auto dir = ckpt->find("auto");
  ASSERT_TRUE(dir.has_value());
  EXPECT_EQ(fs::path(*dir).filename().string(), checkpoint::step_dir_name(1));
  if (test_world().is_root()) EXPECT_NE(log_.find("skipping"), std::string::npos) << log_;
}

}  // namespace
