#include "model/variants.h"

#include <stdexcept>

#include "config/config.h"
#include "util/text.h"

namespace coatnet::model {

namespace {

ModelSpec paper(const std::string& name, std::vector<int> depths, std::vector<int> widths,
                int stem) {
  ModelSpec s;
  s.name = name;
  s.depths = std::move(depths);
  s.widths = std::move(widths);
  s.stem_widths = {stem, stem};
  s.head_hidden = s.widths.back();
  return s;
}

// CoAtNet-6/7: the paper's S3 as an MBConv stage and a stride-1 transformer stage.
ModelSpec paper_mixed_s3(const std::string& name, std::vector<int> depths,
                         std::vector<int> widths) {
  ModelSpec s = paper(name, std::move(depths), std::move(widths), 192);
  s.layout = "CCCTT";
  s.strides = {2, 2, 2, 1, 2};
  return s;
}

// timm's "rw" CoAtNets predate the paper's code: SiLU convs, expansion from input width,
// qkv at the input width. Their differences are listed in timm's _rw_coat_cfg/_rw_max_cfg.
ModelSpec rw_base(const std::string& name) {
  ModelSpec s;
  s.name = name;
  s.head_hidden = 0;
  s.conv.act = Act::SiLU;
  s.conv.expand_output = false;
  s.conv.stride_mode = StrideMode::Pool;
  s.transformer.expand_first = false;
  return s;
}

// Every named variant: the paper's Table 3, then timm's variants with public weights.
struct Variant {
  const char* name;
  ModelSpec (*make)(const char* name);
};

const std::vector<Variant>& variants() {
  static const std::vector<int> w0{96, 192, 384, 768};
  static const std::vector<Variant> table{
      {"coatnet_0_224",
       [](const char* n) {
         return paper(n, {2, 3, 5, 2}, w0, 64);
       }},
      {"coatnet_1_224",
       [](const char* n) {
         return paper(n, {2, 6, 14, 2}, w0, 64);
       }},
      {"coatnet_2_224",
       [](const char* n) {
         return paper(n, {2, 6, 14, 2}, {128, 256, 512, 1024}, 128);
       }},
      {"coatnet_3_224",
       [](const char* n) {
         return paper(n, {2, 6, 14, 2}, {192, 384, 768, 1536}, 192);
       }},
      {"coatnet_4_224",
       [](const char* n) {
         return paper(n, {2, 12, 28, 2}, {192, 384, 768, 1536}, 192);
       }},
      // The paper's CoAtNet-5 as timm defines it (timm's MaxxVitCfg coatnet_5: stem 192, as
      // CoAtNet-4; the paper's Table 10 does not give the stem width).
      {"coatnet_5_224",
       [](const char* n) {
         return paper(n, {2, 12, 28, 2}, {256, 512, 1280, 2048}, 192);
       }},
      // CoAtNet-6 and -7, pre-trained on JFT-3B in the paper (its appendix, "CoAtNet-6/7":
      // 1.47B and 2.44B parameters). Stage S3 holds MBConv blocks followed by transformer blocks
      // at twice the width: "2/3 of the MBConv blocks of S2" moved into S3 with their hidden
      // size doubled. Here S3 is two stages, the MBConv part downsampling and the transformer
      // part keeping the resolution (stride 1):
      //   CoAtNet-6: S0 192, S1 2×C 192, S2 4×C 384, S3 8×C 768 + 42×T 1536, S4 2×T 3072
      //   CoAtNet-7: S0 192, S1 2×C 256, S2 4×C 512, S3 8×C 1024 + 42×T 2048, S4 2×T 3072
      // The appendix table itself was not at hand: these are reconstructed from its text and
      // checked by their parameter counts, 1.468B and 2.439B (test Variants.PaperParameterCounts).
      {"coatnet_6_224",
       [](const char* n) {
         return paper_mixed_s3(n, {2, 4, 8, 42, 2}, {192, 384, 768, 1536, 3072});
       }},
      {"coatnet_7_224",
       [](const char* n) {
         return paper_mixed_s3(n, {2, 4, 8, 42, 2}, {256, 512, 1024, 2048, 3072});
       }},
      {"coatnet_0_rw_224",
       [](const char* n) {
         ModelSpec s = rw_base(n);
         s.depths = {2, 3, 7, 2};
         s.widths = w0;
         s.stem_widths = {32, 64};
         s.conv.pre_norm_act = true;
         s.conv.output_bias = false;
         s.conv.se_early = true;
         s.conv.se_act = Act::ReLU;
         s.transformer.shortcut_bias = false;
         return s;
       }},
      {"coatnet_nano_rw_224",
       [](const char* n) {
         ModelSpec s = rw_base(n);
         s.depths = {3, 4, 6, 3};
         s.widths = {64, 128, 256, 512};
         s.stem_widths = {32, 64};
         return s;
       }},
  };
  return table;
}

}  // namespace

std::vector<std::string> variant_names() {
  std::vector<std::string> names;
  for (const auto& v : variants()) names.push_back(v.name);
  return names;
}

ModelSpec variant(const std::string& name) {
  for (const auto& v : variants())
    if (name == v.name) return v.make(v.name);
  throw std::invalid_argument("unknown model '" + name + "'" +
                              text::did_you_mean(name, variant_names()) +
                              "; known: " + text::join(variant_names(), ", ") + ", custom");
}

BlockType ModelSpec::block_type(size_t stage) const {
  return layout.at(stage) == 'T' ? BlockType::Transformer : BlockType::MBConv;
}

void ModelSpec::validate() const {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("model " + name + ": " + what);
  };
  size_t n = layout.size();
  if (n == 0) fail("layout is empty; expected one of C/T per stage, e.g. CCTT");
  for (char c : layout)
    if (c != 'C' && c != 'T')
      fail("layout '" + layout + "' has '" + std::string(1, c) +
           "'; expected C (MBConv) or T (transformer) per stage, e.g. CCTT");
  if (depths.size() != n)
    fail("depths has " + std::to_string(depths.size()) + " entries but layout '" + layout +
         "' has " + std::to_string(n) + " stages");
  if (widths.size() != n)
    fail("widths has " + std::to_string(widths.size()) + " entries but layout '" + layout +
         "' has " + std::to_string(n) + " stages");
  for (size_t i = 0; i < n; ++i) {
    if (depths[i] < 1) fail("depths[" + std::to_string(i) + "] = " + std::to_string(depths[i]));
    if (block_type(i) == BlockType::Transformer && widths[i] % transformer.dim_head != 0)
      fail("width " + std::to_string(widths[i]) + " of transformer stage S" +
           std::to_string(i + 1) + " is not a multiple of dim_head " +
           std::to_string(transformer.dim_head));
  }
  if (!strides.empty() && strides.size() != n)
    fail("strides has " + std::to_string(strides.size()) + " entries but layout '" + layout +
         "' has " + std::to_string(n) + " stages");
  for (size_t i = 0; i < strides.size(); ++i)
    if (strides[i] != 1 && strides[i] != 2)
      fail("strides[" + std::to_string(i) + "] = " + std::to_string(strides[i]) +
           ": a stage downsamples by 2 or keeps the resolution (1)");
  if (stem_widths.empty() || stem_widths.size() > 2) fail("stem_widths needs 1 or 2 entries");
  const int r = reduction();
  if (image_size % r != 0)
    fail("image_size " + std::to_string(image_size) + " must be a multiple of " +
         std::to_string(r) + " (stem /2 and each stage by its stride); try " +
         std::to_string((image_size / r + 1) * r));
  if (num_classes < 1) fail("num_classes = " + std::to_string(num_classes));
  if (in_chans < 1) fail("in_chans = " + std::to_string(in_chans));
  if (drop_path < 0 || drop_path >= 1) fail("drop_path = " + std::to_string(drop_path));
}

int ModelSpec::reduction() const {
  int r = 2;  // the stem
  for (size_t i = 0; i < layout.size(); ++i) r *= stride(i);
  return r;
}

ModelSpec spec_from_config(const config::Config& cfg) {
  std::string name = cfg.get_string("model.name");
  ModelSpec s = variant(name == "custom" ? "coatnet_0_224" : name);
  if (name == "custom") s.name = "custom";
  if (!cfg.get_string("model.layout").empty()) {
    s.layout = cfg.get_string("model.layout");
    if (s.strides.size() != s.layout.size()) s.strides.clear();  // another number of stages
  }
  auto ints = [](const std::vector<int64_t>& v) { return std::vector<int>(v.begin(), v.end()); };
  if (!cfg.get_ints("model.depths").empty()) s.depths = ints(cfg.get_ints("model.depths"));
  if (!cfg.get_ints("model.widths").empty()) s.widths = ints(cfg.get_ints("model.widths"));
  if (!cfg.get_ints("model.strides").empty()) s.strides = ints(cfg.get_ints("model.strides"));
  if (cfg.get_int("model.stem_width") > 0) {
    int w = static_cast<int>(cfg.get_int("model.stem_width"));
    s.stem_widths = {w, w};
  }
  if (cfg.get_int("model.head_hidden") >= 0)
    s.head_hidden = static_cast<int>(cfg.get_int("model.head_hidden"));
  s.transformer.dim_head = static_cast<int>(cfg.get_int("model.dim_head"));
  s.image_size = static_cast<int>(cfg.get_int("model.image_size"));
  s.in_chans = static_cast<int>(cfg.get_int("model.in_chans"));
  s.num_classes = static_cast<int>(cfg.get_int("model.num_classes"));
  s.drop_path = cfg.get_float("model.drop_path");
  s.drop_rate = cfg.get_float("model.drop_rate");
  s.validate();
  return s;
}

}  // namespace coatnet::model
