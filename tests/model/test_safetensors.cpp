// safetensors reading/writing and strict loading by name: every malformed input is an error
// naming the file and tensor, never a crash.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "model/coatnet.h"
#include "model/safetensors.h"
#include "model/weights.h"

using namespace coatnet::model;
namespace fs = std::filesystem;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coatnet_st_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string bytes_of(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  void write_bytes(const std::string& p, const std::string& data) {
    std::ofstream f(p, std::ios::binary);
    f << data;
  }
  // A file with a hand-written header and `data_len` bytes of data.
  std::string with_header(const std::string& header, size_t data_len) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
    return out + header + std::string(data_len, '\0');
  }
  std::string error_of(const std::string& p) {
    try {
      read_safetensors(p);
    } catch (const SafetensorsError& e) {
      return e.what();
    }
    return "no error";
  }

  fs::path dir_;
};

}  // namespace

TEST_F(SafetensorsTest, RoundTripKeepsDtypesShapesValues) {
  NamedTensors in{{"a", at::randn({3, 4})},
                  {"b", at::arange(10, at::kLong)},
                  {"c", at::randn({2, 2}).to(at::kBFloat16)},
                  {"d", at::randn({5}).to(at::kHalf)},
                  {"empty", at::zeros({0, 3})}};
  write_safetensors(path("x.safetensors"), in, {{"format", "pt"}});
  EXPECT_FALSE(fs::exists(path("x.safetensors.tmp")));
  auto out = read_safetensors(path("x.safetensors"));
  ASSERT_EQ(out.tensors.size(), in.size());
  EXPECT_EQ(out.metadata.at("format"), "pt");
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out.tensors[i].first, in[i].first);
    EXPECT_EQ(out.tensors[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE(at::equal(out.tensors[i].second, in[i].second)) << in[i].first;
  }
}

TEST_F(SafetensorsTest, TruncatedAnywhereIsAnErrorNotACrash) {
  write_safetensors(path("full.safetensors"), {{"w", at::randn({64, 64})}});
  std::string full = bytes_of(path("full.safetensors"));
  for (size_t cut :
       {size_t{0}, size_t{4}, size_t{8}, size_t{20}, full.size() / 2, full.size() - 1}) {
    write_bytes(path("cut.safetensors"), full.substr(0, cut));
    std::string err = error_of(path("cut.safetensors"));
    EXPECT_NE(err, "no error") << "cut at " << cut;
    EXPECT_NE(err.find("cut.safetensors"), std::string::npos) << err;
  }
  write_bytes(path("cut.safetensors"), full.substr(0, full.size() - 1));
  EXPECT_NE(error_of(path("cut.safetensors")).find("truncated"), std::string::npos);
}

TEST_F(SafetensorsTest, MalformedHeadersAreNamed) {
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
  };
  std::vector<Case> cases{
      {"{not json", 0, "malformed header"},
      {"[1,2]", 0, "not a JSON object"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8, "'w'"},
      {R"({"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", 8, "unsupported dtype"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "bad shape"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "truncated"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       16, "overlap"},
      {R"({"w":{"dtype":"F32","shape":[2]}})", 8, "data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       8, "'w' appears twice"},
      {R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, "bad shape"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", 8, "bad data_offsets"},
  };
  for (const auto& c : cases) {
    write_bytes(path("bad.safetensors"), with_header(c.header, c.data));
    std::string err = error_of(path("bad.safetensors"));
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.header << " -> " << err;
  }
  EXPECT_NE(error_of(path("missing.safetensors")).find("cannot open"), std::string::npos);
}

TEST_F(SafetensorsTest, StrictLoadNamesMissingExtraAndMisshapedTensors) {
  ModelSpec spec = variant("coatnet_nano_rw_224");
  spec.image_size = 32;
  spec.num_classes = 10;
  CoAtNet net(spec);
  NamedTensors good = state_dict(*net);
  auto error_of_load = [&](const NamedTensors& t) {
    CoAtNet fresh(spec);
    try {
      load_state_dict(*fresh, t, "w.safetensors");
    } catch (const WeightsError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of_load(good), "no error");

  NamedTensors missing(good.begin() + 1, good.end());
  EXPECT_NE(error_of_load(missing).find("missing tensor '" + good[0].first + "'"),
            std::string::npos);

  NamedTensors extra = good;
  extra.emplace_back("head.fc.extra", at::zeros({1}));
  EXPECT_NE(error_of_load(extra).find("unexpected tensor 'head.fc.extra'"), std::string::npos);

  NamedTensors misshaped = good;
  for (auto& [name, t] : misshaped)
    if (name == "head.fc.weight") t = at::zeros({11, t.size(1)});
  std::string err = error_of_load(misshaped);
  EXPECT_NE(err.find("'head.fc.weight' has shape [11, 512]"), std::string::npos) << err;

  // A file that loads must reproduce the model exactly.
  write_safetensors(path("w.safetensors"), good);
  CoAtNet copy(spec);
  load_weights(*copy, path("w.safetensors"));
  copy->eval();
  net->eval();
  at::NoGradGuard no_grad;
  at::Tensor x = at::randn({2, 3, 32, 32});
  EXPECT_TRUE(at::equal(copy->forward(x), net->forward(x)));
}

TEST_F(SafetensorsTest, MissingBatchNormCountersLoadAsZeroOthersStillRefused) {
  // PyTorch's load_state_dict sets an absent num_batches_tracked to 0; converted and trimmed
  // checkpoints often lack it. Every other missing tensor is still an error naming it.
  ModelSpec spec = variant("coatnet_nano_rw_224");
  spec.image_size = 32;
  spec.num_classes = 10;
  CoAtNet net(spec);
  NamedTensors trimmed;
  std::vector<std::string> counters;
  for (const auto& [name, t] : state_dict(*net)) {
    if (name.size() > 20 && name.compare(name.size() - 20, 20, ".num_batches_tracked") == 0)
      counters.push_back(name);
    else
      trimmed.emplace_back(name, t);
  }
  ASSERT_GT(counters.size(), 5u);
  CoAtNet fresh(spec);
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : state_dict(*fresh))
      if (std::find(counters.begin(), counters.end(), name) != counters.end()) t.fill_(7);
  }
  const LoadReport report = load_state_dict(*fresh, trimmed, "trimmed.safetensors");
  EXPECT_EQ(report.counters_zeroed, counters);
  for (auto& [name, t] : state_dict(*fresh))
    if (std::find(counters.begin(), counters.end(), name) != counters.end())
      EXPECT_EQ(t.item<int64_t>(), 0) << name;

  NamedTensors no_mean;
  for (const auto& [name, t] : trimmed)
    if (name.find("running_mean") == std::string::npos) no_mean.emplace_back(name, t);
  try {
    CoAtNet again(spec);
    load_state_dict(*again, no_mean, "no_mean.safetensors");
    FAIL() << "weights without a running_mean were accepted";
  } catch (const WeightsError& e) {
    EXPECT_NE(std::string(e.what()).find("running_mean'"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("num_batches_tracked"), std::string::npos) << e.what();
  }
}
