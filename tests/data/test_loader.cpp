// Decode + augment + prefetch: the same sample gives identical pixels on any rank, thread
// count and run; DCT-scaled decoding agrees with full decoding; resume and corrupt records.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <filesystem>

#include "data/loader.h"

using namespace coatnet::data;
namespace fs = std::filesystem;

namespace {

// A smooth RGB test image (gradients + a slow wave), so resampling differences stay small.
std::vector<uint8_t> test_image(int h, int w, int seed) {
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(255.0 * x / w);
      p[1] = static_cast<uint8_t>(255.0 * y / h);
      p[2] = static_cast<uint8_t>(127 + 100 * std::sin((x + y + seed * 13) / 40.0));
    }
  return img;
}

std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& rgb, int h, int w) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  tjCompress2(tj, rgb.data(), w, 0, h, TJPF_RGB, &buf, &size, TJSAMP_420, 95, 0);
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coatnet_loader_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ShardMeta meta;
    meta.num_classes = 4;
    for (int k = 0; k < 2; ++k) {
      ShardWriter w(shard_path((dir_ / "jpg").string(), k, 2), meta);
      for (int i = 0; i < 20; ++i) {
        int h = 120 + 10 * (i % 3), wd = 160 - 10 * (i % 4);
        Record r;
        r.bytes = encode_jpeg(test_image(h, wd, i), h, wd);
        r.height = h;
        r.width = wd;
        r.channels = 3;
        r.label = (i + k) % 4;
        w.add(r);
      }
      w.commit();
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  LoaderOptions options(int threads, int rank = 0, int world = 1) {
    LoaderOptions o;
    o.files = expand_globs({(dir_ / "jpg-*.h5").string()});
    o.threads = threads;
    o.prefetch = 2;
    o.sampler.global_batch = 12;
    o.sampler.rank = rank;
    o.sampler.world = world;
    o.sampler.seed = 3;
    o.transform.size = 48;
    o.transform.seed = 3;
    return o;
  }
  fs::path dir_;
};

}  // namespace

TEST_F(LoaderTest, SamePixelsOnAnyThreadCountRankAndRun) {
  std::vector<at::Tensor> ref;
  {
    Loader one(options(1));
    for (int i = 0; i < 5; ++i) ref.push_back(one.next().images);  // crosses an epoch (40/12)
  }
  for (int threads : {2, 3}) {
    Loader l(options(threads));
    for (int i = 0; i < 5; ++i)
      EXPECT_TRUE(at::equal(l.next().images, ref[i])) << threads << " " << i;
  }
  // Rank r of 3 gets rows [4r, 4r+4) of the world-size-1 batch, pixel for pixel.
  for (int rank = 0; rank < 3; ++rank) {
    Loader l(options(2, rank, 3));
    for (int i = 0; i < 5; ++i)
      EXPECT_TRUE(at::equal(l.next().images, ref[i].slice(0, 4 * rank, 4 * rank + 4))) << rank;
  }
}

TEST_F(LoaderTest, BatchesHaveShapesLabelsAndNormalization) {
  Loader l(options(2));
  Batch b = l.next();
  EXPECT_EQ(b.images.sizes(), (at::IntArrayRef{12, 3, 48, 48}));
  EXPECT_EQ(b.images.scalar_type(), at::kFloat);
  EXPECT_TRUE(b.valid.all().item<bool>());
  for (int k = 0; k < 12; ++k) {
    auto [shard, j] = l.dataset().locate(b.indices[k]);
    EXPECT_EQ(b.targets[k].item<int64_t>(), shard->label(j));
  }
  // Normalized with ImageNet mean/std: 0..255 maps into about [-2.2, 2.7].
  EXPECT_GT(b.images.min().item<float>(), -2.2f);
  EXPECT_LT(b.images.max().item<float>(), 2.7f);
  EXPECT_GE(l.total_wait_seconds(), 0.0);
}

TEST_F(LoaderTest, UInt8AndChannelsLastBatchesHoldTheSameImages) {
  // The transform writes each sample straight into the batch: uint8 or normalised float, NCHW
  // or channels-last. All four must be the same image; padding rows are black.
  auto opts = [&](bool normalize, bool channels_last) {
    LoaderOptions o = options(2);
    o.sampler.drop_last = false;  // 40 samples in batches of 12: the 4th batch is padded
    o.normalize = normalize;
    o.channels_last = channels_last;
    return o;
  };
  Loader f(opts(true, false)), fl(opts(true, true)), u(opts(false, false)), ul(opts(false, true));
  const auto mean = at::tensor({0.485, 0.456, 0.406}, at::kDouble).view({1, 3, 1, 1});
  const auto std = at::tensor({0.229, 0.224, 0.225}, at::kDouble).view({1, 3, 1, 1});
  for (int i = 0; i < 4; ++i) {
    Batch bf = f.next(), bfl = fl.next(), bu = u.next(), bul = ul.next();
    ASSERT_EQ(bu.images.scalar_type(), at::kByte);
    EXPECT_TRUE(bfl.images.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(bul.images.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(at::equal(bfl.images.contiguous(), bf.images)) << i;
    EXPECT_TRUE(at::equal(bul.images.contiguous(), bu.images)) << i;
    auto from_u8 = (bu.images.to(at::kDouble) / 255.0 - mean) / std;
    EXPECT_LT((from_u8 - bf.images.to(at::kDouble)).abs().max().item<double>(), 1e-5) << i;
    // Normalising a uint8 batch on the device is the loader's own arithmetic: the same floats.
    EXPECT_TRUE(at::equal(u.images_on(bu, at::kCPU), bf.images)) << i;
    at::Tensor cl = ul.images_on(bul, at::kCPU);
    EXPECT_TRUE(cl.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(at::equal(cl, bf.images)) << i;
    EXPECT_TRUE(f.images_on(bf, at::kCPU).is_same(bf.images))
        << "a float batch on CPU is not copied";
    if (i == 3) {
      ASSERT_FALSE(bu.valid.all().item<bool>());
      const int64_t pad = bu.valid.logical_not().nonzero()[0][0].item<int64_t>();
      EXPECT_EQ(bu.images[pad].max().item<int>(), 0);
    }
  }
}

TEST_F(LoaderTest, MeanAndStdNeedOneValuePerChannel) {
  // uint8 batches too: images_on normalises them with the same values later.
  LoaderOptions o = options(1);
  o.normalize = false;
  o.std = {0.5, 0.5};
  try {
    Loader l(o);
    FAIL() << "2 std values for 3 channels were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("data.mean and data.std need 3 values"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("got 3 and 2"), std::string::npos) << e.what();
  }
}

TEST_F(LoaderTest, PinnedBatchesReachTheGpuNormalised) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: pinned host memory and GPU normalisation need one";
  LoaderOptions o = options(2);
  Loader f(o);
  o.normalize = false;
  o.pin_memory = true;
  Loader u(o);
  Batch bf = f.next(), bu = u.next();
  EXPECT_TRUE(bu.images.is_pinned());
  // The labels too: a copy from pageable memory waits for all the GPU's queued work.
  EXPECT_TRUE(bu.targets.is_pinned());
  EXPECT_TRUE(bu.valid.is_pinned());
  at::Tensor on_gpu = u.images_on(bu, at::Device(at::kCUDA, 0));
  ASSERT_TRUE(on_gpu.is_cuda());
  EXPECT_LT((on_gpu.cpu() - bf.images).abs().max().item<float>(), 1e-5);
}

TEST_F(LoaderTest, ChannelsLastBatchesArePinned) {
  // The channels-last layout must be the pinned allocation's own: re-laying a pinned NCHW
  // batch out afterwards copied it into pageable memory, and the copy to the GPU was then
  // synchronous.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: pinned host memory needs one";
  LoaderOptions o = options(2);
  Loader contiguous(o);
  o.channels_last = true;
  o.pin_memory = true;
  Loader cl(o);
  Batch bc = contiguous.next(), b = cl.next();
  EXPECT_TRUE(b.images.is_pinned());
  EXPECT_TRUE(b.images.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::equal(b.images, bc.images));
  at::Tensor on_gpu = cl.images_on(b, at::Device(at::kCUDA, 0));
  EXPECT_TRUE(on_gpu.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::equal(on_gpu.cpu(), bc.images));
}

TEST_F(LoaderTest, DctScaledDecodeMatchesFullDecode) {
  // The transform decodes at a reduced DCT scale; resizing a full-size decode of the same crop
  // must give nearly the same pixels.
  Shard shard(shard_path((dir_ / "jpg").string(), 0, 2));
  TransformOptions o;
  o.size = 32;
  o.scale_min = 0.5;
  Decoder dec;
  tjhandle tj = tjInitDecompress();
  double worst = 0;
  for (int64_t i = 0; i < shard.size(); ++i) {
    Record r = shard.read(i);
    std::vector<uint8_t> fast(32 * 32 * 3), full(r.height * r.width * 3), ref(32 * 32 * 3);
    dec.transform(r.bytes, "jpeg", r.height, r.width, 3, o, 0, i, fast.data());
    tjDecompress2(tj, r.bytes.data(), r.bytes.size(), full.data(), r.width, 0, r.height, TJPF_RGB,
                  0);
    resize_crop(full.data(), r.height, r.width, 3, choose_crop(o, 0, i, r.height, r.width), 32, 3,
                ref.data());
    double sum = 0;
    for (size_t p = 0; p < fast.size(); ++p) sum += std::abs(fast[p] - ref[p]);
    worst = std::max(worst, sum / fast.size());
  }
  tjDestroy(tj);
  EXPECT_LT(worst, 4.0) << "mean |difference| per pixel channel (0..255)";
}

TEST_F(LoaderTest, OneChannelOutputIsTheLumaOfTheColourOne) {
  // 1-channel output decodes the JPEG's Y plane alone; it must match the luma of the RGB output.
  Shard shard(shard_path((dir_ / "jpg").string(), 1, 2));
  TransformOptions o;
  o.size = 40;
  Decoder dec;
  double worst = 0;
  for (int64_t i = 0; i < 5; ++i) {
    Record r = shard.read(i);
    std::vector<uint8_t> rgb(40 * 40 * 3), gray(40 * 40);
    o.channels = 3;
    dec.transform(r.bytes, "jpeg", r.height, r.width, 3, o, 0, i, rgb.data());
    o.channels = 1;
    dec.transform(r.bytes, "jpeg", r.height, r.width, 3, o, 0, i, gray.data());
    for (size_t p = 0; p < gray.size(); ++p) {
      double luma = 0.299 * rgb[3 * p] + 0.587 * rgb[3 * p + 1] + 0.114 * rgb[3 * p + 2];
      worst = std::max(worst, std::abs(luma - gray[p]));
    }
  }
  EXPECT_LT(worst, 4.0) << "levels between the Y plane and the luma of the RGB decode";
}

TEST_F(LoaderTest, EvalCropOfFullImageIsExact) {
  // crop_pct 1 on a square image at its own size: the output is the image itself.
  std::vector<uint8_t> img(28 * 28);
  for (size_t p = 0; p < img.size(); ++p) img[p] = static_cast<uint8_t>(p * 37);
  TransformOptions o;
  o.train = false;
  o.crop_pct = 1.0;
  o.size = 28;
  o.channels = 1;
  std::vector<uint8_t> out(28 * 28);
  Decoder dec;
  dec.transform(img, "raw", 28, 28, 1, o, 0, 0, out.data());
  EXPECT_EQ(out, img);
}

TEST_F(LoaderTest, CropsStayInsideAndRespectScale) {
  TransformOptions o;
  for (int64_t i = 0; i < 500; ++i) {
    CropBox b = choose_crop(o, 1, i, 375, 500);
    ASSERT_GE(b.x, 0);
    ASSERT_GE(b.y, 0);
    ASSERT_LE(b.x + b.w, 500);
    ASSERT_LE(b.y + b.h, 375);
    double frac = b.w * b.h / (375.0 * 500);
    ASSERT_GT(frac, 0.07);
    ASSERT_LE(frac, 1.0);
  }
  o.train = false;
  CropBox c = choose_crop(o, 0, 0, 375, 500);
  EXPECT_DOUBLE_EQ(c.w, 0.875 * 375);
  EXPECT_DOUBLE_EQ(c.x, (500 - c.w) / 2);
}

TEST_F(LoaderTest, ResumeContinuesTheSameStream) {
  Loader straight(options(2));
  for (int i = 0; i < 2; ++i) straight.next();
  SamplerState saved = straight.state();
  Loader resumed(options(1));
  resumed.restore(saved);
  for (int i = 0; i < 4; ++i) {
    Batch a = straight.next(), b = resumed.next();
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_TRUE(at::equal(a.images, b.images));
  }
}

TEST_F(LoaderTest, CorruptRecordIsCountedAndMaskedOrAnError) {
  ShardMeta meta;
  meta.num_classes = 2;
  ShardWriter w((dir_ / "bad.h5").string(), meta);
  for (int i = 0; i < 4; ++i) {
    Record r;
    r.bytes = encode_jpeg(test_image(64, 64, i), 64, 64);
    if (i == 2) r.bytes.resize(r.bytes.size() / 3);  // truncated JPEG
    if (i == 3) r.bytes.assign(200, 'x');            // text named .JPEG
    r.height = r.width = 64;
    r.channels = 3;
    r.label = i % 2;
    w.add(r);
  }
  w.commit();
  LoaderOptions o = options(2);
  o.files = {(dir_ / "bad.h5").string()};
  o.sampler.global_batch = 4;
  o.sampler.shuffle = false;
  Loader skip(o);
  Batch b = skip.next();
  EXPECT_EQ(skip.corrupt_records(), 1 + 1) << "the truncated and the text record";
  EXPECT_TRUE(b.valid[0].item<bool>());
  EXPECT_FALSE(b.valid[3].item<bool>());
  o.skip_corrupt = false;
  Loader strict(o);
  try {
    strict.next();
    FAIL() << "expected a DecodeError";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("record "), std::string::npos) << e.what();
  }
}
