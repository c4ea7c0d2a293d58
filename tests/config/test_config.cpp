// Config schema: defaults, the bundled recipes, overrides, and errors that name the key path,
// the value and what was expected.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "config/schema.h"
#include "model/variants.h"

using coatnet::config::Config;
using coatnet::config::ConfigError;
namespace fs = std::filesystem;

namespace {

std::string error_of_yaml(const std::string& yaml) {
  try {
    Config c = Config::defaults();
    c.merge_yaml(YAML::Load(yaml), "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

std::string error_of_set(const std::string& assignment) {
  try {
    Config::defaults().set(assignment);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

}  // namespace

TEST(Config, EveryKeyHasADocAndAValidDefault) {
  Config c = Config::defaults();  // throws if any default fails its own schema
  for (const auto& spec : coatnet::config::schema()) {
    EXPECT_FALSE(spec.doc.empty()) << spec.path;
    EXPECT_NE(spec.path.find('.'), std::string::npos) << spec.path << " needs a section";
  }
  EXPECT_EQ(c.get_string("optim.name"), "adamw");
}

TEST(Config, BundledRecipesLoadAndBuildTheirModels) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(COATNET_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    Config c = Config::load(entry.path().string(), {});
    EXPECT_NO_THROW(coatnet::model::spec_from_config(c));
    ++n;
  }
  EXPECT_GE(n, 6) << "configs/ should hold the paper's recipes, JFT pre-training and the demo";
}

TEST(Config, PaperRecipeValues) {
  Config c = Config::load(COATNET_SOURCE_DIR "/configs/coatnet_2_imagenet1k.yaml", {});
  EXPECT_EQ(c.get_string("model.name"), "coatnet_2_224");
  EXPECT_DOUBLE_EQ(c.get_float("model.drop_path"), 0.5);
  EXPECT_EQ(c.get_int("data.batch_size"), 4096);
  EXPECT_EQ(c.get_int("schedule.epochs"), 300);
  EXPECT_EQ(c.get_int("schedule.warmup_steps"), 10000);
  EXPECT_DOUBLE_EQ(c.get_float("optim.lr"), 1e-3);
  EXPECT_DOUBLE_EQ(c.get_float("schedule.min_lr"), 1e-5);
  EXPECT_DOUBLE_EQ(c.get_float("optim.weight_decay"), 0.05);
  EXPECT_EQ(c.get_int("aug.randaugment_n"), 2);
  EXPECT_EQ(c.get_int("aug.randaugment_m"), 15);
  EXPECT_DOUBLE_EQ(c.get_float("aug.mixup"), 0.8);
}

TEST(Config, UnknownKeyNamesFullPathAndClosestKey) {
  std::string err = error_of_yaml("optim:\n  lr: 1e-3\n  weight_decy: 0.05\n");
  expect_contains(err, "unknown key 'optim.weight_decy'");
  expect_contains(err, "test.yaml:3");
  expect_contains(err, "did you mean 'optim.weight_decay'");
  expect_contains(error_of_yaml("optimizer:\n  lr: 1\n"), "unknown key 'optimizer'");
  expect_contains(error_of_yaml("model: coatnet_0_224\n"), "model (test.yaml:1) is a section");
}

TEST(Config, WrongTypeNamesPathValueAndExpectation) {
  std::string err = error_of_yaml("optim:\n  lr: fast\n");
  expect_contains(err, "optim.lr = fast");
  expect_contains(err, "expected a number");
  expect_contains(error_of_yaml("model:\n  depths: 3\n"), "expected a list of integers");
  expect_contains(error_of_yaml("data:\n  multi_label: maybe\n"), "expected a bool");
  expect_contains(error_of_yaml("schedule:\n  type: cosin\n"), "did you mean 'cosine'");
  expect_contains(error_of_yaml("data:\n  batch_size: 2.5\n"), "expected an integer");
}

TEST(Config, OutOfRangeNamesTheRange) {
  std::string err = error_of_yaml("loss:\n  label_smoothing: 1.5\n");
  expect_contains(err, "loss.label_smoothing = 1.5");
  expect_contains(err, "in [0, 0.99]");
  expect_contains(error_of_yaml("data:\n  batch_size: 0\n"), "data.batch_size = 0");
  expect_contains(error_of_yaml("model:\n  depths: [2, 0, 5, 2]\n"), "model.depths = [2, 0, 5, 2]");
}

TEST(Config, SetOverridesAreTypedBySchema) {
  Config c =
      Config::load("", {"optim.lr=5e-4", "model.depths=[1, 2, 3, 1]", "data.multi_label=true",
                        "schedule.warmup_steps=2e4", "data.train=a.h5"});
  EXPECT_DOUBLE_EQ(c.get_float("optim.lr"), 5e-4);
  EXPECT_EQ(c.get_ints("model.depths"), (std::vector<int64_t>{1, 2, 3, 1}));
  EXPECT_TRUE(c.get_bool("data.multi_label"));
  EXPECT_EQ(c.get_int("schedule.warmup_steps"), 20000);
  EXPECT_EQ(c.get_strings("data.train"), (std::vector<std::string>{"a.h5"}));
  expect_contains(error_of_set("optim.lrr=1"), "did you mean 'optim.lr'");
  expect_contains(error_of_set("optim.lr"), "expected KEY=VALUE");
  expect_contains(error_of_set("optim.lr=-1"), "optim.lr = -1 (--set optim.lr=-1)");
  std::string dtype = error_of_set("data.dtype=float16");
  expect_contains(dtype, "data.dtype");
  expect_contains(dtype, "float16");
  expect_contains(dtype, "auto|float32|uint8");
}

TEST(Config, DumpReadsBackToTheSameConfig) {
  Config c =
      Config::load(COATNET_SOURCE_DIR "/configs/demo_fashion_mnist.yaml", {"train.name=x y"});
  Config again = Config::defaults();
  again.merge_yaml(YAML::Load(c.dump()), "dump");
  EXPECT_EQ(again.dump(), c.dump());
  EXPECT_EQ(again.get_string("train.name"), "x y");
}

TEST(Config, MissingAndInvalidFilesAreNamed) {
  try {
    Config::load("/nonexistent/x.yaml", {});
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), "cannot read /nonexistent/x.yaml");
  }
  std::string p =
      (fs::temp_directory_path() / ("bad_" + std::to_string(::getpid()) + ".yaml")).string();
  std::ofstream(p) << "optim:\n  lr: [1, 2\n";
  try {
    Config::load(p, {});
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), "not valid YAML");
  }
  fs::remove(p);
}

TEST(Config, RecipeKeysAreFlaggedInTheSchema) {
  // The recipe is what a resumed run must keep to continue the same run: the model, optimizer,
  // schedule, loss, augmentation, global batch, seed and precision, and nothing else.
  Config c = Config::defaults();
  c.set("optim.lr=5e-4");
  const auto r = c.recipe();
  for (const char* k :
       {"model.name", "model.drop_path", "optim.lr", "schedule.epochs", "loss.label_smoothing",
        "aug.mixup", "data.batch_size", "train.seed", "precision.backend"})
    EXPECT_EQ(r.count(k), 1u) << k << " is not in the recipe";
  for (const char* k : {"model.init_from", "data.train", "data.workers", "train.max_steps",
                        "train.run_dir", "checkpoint.dir", "dist.backend"})
    EXPECT_EQ(r.count(k), 0u) << k << " is in the recipe";
  EXPECT_EQ(r.at("optim.lr"), "0.0005");
  // The values as dump() writes them: each recipe line of the dump holds its value.
  const std::string dump = c.dump();
  for (const auto& [k, v] : r)
    EXPECT_NE(dump.find(k.substr(k.find('.') + 1) + ": " + v), std::string::npos) << k;
}
