// Relative position bias: table indexing against the direct definition, and resizing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "model/coatnet.h"
#include "model/relpos.h"
#include "model/weights.h"

using namespace coatnet::model;

TEST(RelPos, BiasMatchesDirectLoop) {
  for (auto [h, w] : std::vector<std::pair<int, int>>{{3, 3}, {4, 7}, {7, 7}, {1, 5}}) {
    const int heads = 3;
    RelPosBias rp(h, w, heads);
    {
      at::NoGradGuard no_grad;
      rp->table.copy_(at::randn_like(rp->table));
    }
    at::Tensor bias = rp->bias();
    ASSERT_EQ(bias.sizes(), (at::IntArrayRef{heads, h * w, h * w}));
    auto table = rp->table.accessor<float, 2>();
    auto got = bias.accessor<float, 3>();
    for (int q = 0; q < h * w; ++q) {
      for (int k = 0; k < h * w; ++k) {
        int dy = q / w - k / w, dx = q % w - k % w;  // relative offset of query to key
        int row = (dy + h - 1) * (2 * w - 1) + (dx + w - 1);
        for (int hd = 0; hd < heads; ++hd)
          ASSERT_EQ(got[hd][q][k], table[row][hd]) << h << "x" << w << " q" << q << " k" << k;
      }
    }
  }
}

TEST(RelPos, ResizeToSameSizeIsIdentity) {
  at::Tensor t = at::randn({13 * 13, 4});
  EXPECT_TRUE(at::equal(resize_bias_table(t, {7, 7}, {7, 7}), t));
}

TEST(RelPos, ResizeKeepsConstantsAndShape) {
  at::Tensor t = at::full({13 * 13, 2}, 0.25f);
  at::Tensor r = resize_bias_table(t, {7, 7}, {12, 12});
  EXPECT_EQ(r.sizes(), (at::IntArrayRef{23 * 23, 2}));
  EXPECT_TRUE(at::allclose(r, at::full_like(r, 0.25f)));
}

TEST(RelPos, ResizeUpThenDownIsClose) {
  // A smooth bias over the offset plane survives a round trip through a finer grid.
  at::Tensor dy = at::arange(-6, 7, at::kFloat).view({13, 1}).expand({13, 13});
  at::Tensor dx = at::arange(-6, 7, at::kFloat).view({1, 13}).expand({13, 13});
  at::Tensor plane = at::exp(-(dy * dy + dx * dx) / 40.0);
  at::Tensor t = plane.reshape({-1, 1});
  at::Tensor back = resize_bias_table(resize_bias_table(t, {7, 7}, {13, 13}), {13, 13}, {7, 7});
  EXPECT_LT((back - t).abs().max().item<float>(), 0.05f);
}

TEST(RelPos, TableGridInference) {
  EXPECT_EQ(table_grid(13 * 13, {12, 12}), (std::pair<int64_t, int64_t>{7, 7}));
  EXPECT_EQ(table_grid(7 * 13, {4, 7}), (std::pair<int64_t, int64_t>{4, 7}));
  EXPECT_THROW(table_grid(50, {7, 7}), std::invalid_argument);
}

TEST(RelPos, WeightsFrom224LoadAt384WithResizedTables) {
  ModelSpec spec = variant("coatnet_nano_rw_224");
  spec.image_size = 64;
  CoAtNet small(spec);
  spec.image_size = 128;
  CoAtNet big(spec);
  auto report = load_state_dict(*big, state_dict(*small), "test");
  // Every transformer block (stages 2 and 3: 6 + 3 blocks) has a table to resize.
  EXPECT_EQ(report.resized.size(), 9u);
  at::Tensor a = small->stem->conv1->weight, b = big->stem->conv1->weight;
  EXPECT_TRUE(at::equal(a, b));
}
