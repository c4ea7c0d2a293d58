// ImageFolder and JFT-list packing: every awkward source is converted or skipped and named,
// never a crash or a silent drop; 1 and 3 ranks write identical shards.
#include <gtest/gtest.h>
#include <png.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/pack.h"

using namespace coatnet::data;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> pixels(int h, int w, int channels) {
  std::vector<uint8_t> p(static_cast<size_t>(h) * w * channels);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>((i * 7) % 256);
  return p;
}

std::string jpeg(int h, int w, int pf = TJPF_RGB, int sub = TJSAMP_420, int flags = 0) {
  tjhandle tj = tjInitCompress();
  auto px = pixels(h, w, tjPixelSize[pf]);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  EXPECT_EQ(tjCompress2(tj, px.data(), w, 0, h, pf, &buf, &size, sub, 90, flags), 0)
      << tjGetErrorStr2(tj);
  std::string out(reinterpret_cast<char*>(buf), size);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

std::string png(int h, int w) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = w;
  img.height = h;
  img.format = PNG_FORMAT_RGB;
  auto px = pixels(h, w, 3);
  png_alloc_size_t size = 0;
  png_image_write_to_memory(&img, nullptr, &size, 0, px.data(), 0, nullptr);
  std::string out(size, '\0');
  png_image_write_to_memory(&img, out.data(), &size, 0, px.data(), 0, nullptr);
  return out;
}

void write(const fs::path& p, const std::string& data) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

class PackImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coatnet_packimg_" + std::to_string(::getpid()));
    root_ = dir_ / "root";
    write(root_ / "cat" / "a_good.JPEG", jpeg(60, 80));
    write(root_ / "cat" / "b_gray.jpg", jpeg(40, 40, TJPF_GRAY, TJSAMP_GRAY));
    write(root_ / "cat" / "c_cmyk.jpg", jpeg(40, 30, TJPF_CMYK, TJSAMP_420));
    write(root_ / "cat" / "d_progressive.jpg",
          jpeg(50, 50, TJPF_RGB, TJSAMP_420, TJFLAG_PROGRESSIVE));
    write(root_ / "cat" / "e_png.JPEG", png(20, 30));  // a PNG named .JPEG, as in ImageNet
    write(root_ / "cat" / "notes.txt", "not an image");
    write(root_ / "dog" / "f_tiny.jpg", jpeg(1, 1));
    write(root_ / "dog" / "g_large.jpg", jpeg(1200, 1600));
    std::string full = jpeg(64, 64);
    write(root_ / "dog" / "h_truncated.jpg", full.substr(0, full.size() / 2));
    write(root_ / "dog" / "i_empty.jpg", "");
    write(root_ / "dog" / "j_text.JPEG", "<html>404 not found</html>");
    fs::create_symlink(dir_ / "nowhere.jpg", root_ / "dog" / "k_dangling.jpg");
  }
  void TearDown() override { fs::remove_all(dir_); }
  PackResult pack(const std::string& prefix, ImageCheckOptions check = {}, int rank = 0,
                  int world = 1, int64_t per_shard = 4) {
    PackOptions o;
    o.records_per_shard = per_shard;
    o.rank = rank;
    o.world = world;
    o.progress = false;
    return pack_images(list_imagefolder(root_.string()), (dir_ / prefix).string(), o, check);
  }
  static bool mentions(const std::vector<std::string>& lines, const std::string& a,
                       const std::string& b) {
    for (const auto& l : lines)
      if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
    return false;
  }
  fs::path dir_, root_;
};

}  // namespace

TEST_F(PackImagesTest, ListingFollowsImageFolder) {
  SourceListing l = list_imagefolder(root_.string());
  EXPECT_EQ(l.class_names, (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ(l.entries.size(), 11u);  // notes.txt is not an image
  EXPECT_EQ(l.ignored_files, 1);
  EXPECT_EQ(l.entries[0].label, 0);
  EXPECT_EQ(l.entries[5].label, 1);
  EXPECT_NE(l.entries[0].path.find("a_good.JPEG"), std::string::npos);
}

TEST_F(PackImagesTest, EveryAwkwardSourceIsConvertedOrSkippedAndNamed) {
  PackResult r = pack("conv/train");
  EXPECT_EQ(r.records, 7);  // good, gray, cmyk, progressive, png, tiny, large
  EXPECT_TRUE(mentions(r.converted, "b_gray.jpg", "grayscale -> RGB JPEG"));
  EXPECT_TRUE(mentions(r.converted, "c_cmyk.jpg", "CMYK -> RGB JPEG"));
  EXPECT_TRUE(mentions(r.converted, "d_progressive.jpg", "progressive -> baseline JPEG"));
  EXPECT_TRUE(mentions(r.converted, "e_png.JPEG", "PNG -> RGB JPEG"));
  EXPECT_TRUE(mentions(r.skipped, "h_truncated.jpg", "truncated or corrupt JPEG"));
  EXPECT_TRUE(mentions(r.skipped, "i_empty.jpg", "empty file"));
  EXPECT_TRUE(mentions(r.skipped, "j_text.JPEG", "not a JPEG or PNG"));
  EXPECT_TRUE(mentions(r.skipped, "k_dangling.jpg", "unreadable"));
  EXPECT_EQ(r.skipped.size(), 4u);

  // Every packed record is a baseline RGB JPEG of the recorded size, with its class.
  Dataset ds(expand_globs({(dir_ / "conv/train-*.h5").string()}));
  ASSERT_EQ(ds.size(), 7);
  tjhandle tj = tjInitDecompress();
  for (int64_t i = 0; i < ds.size(); ++i) {
    Record rec = ds.read(i);
    int w = 0, h = 0, sub = 0, cs = 0;
    ASSERT_EQ(tjDecompressHeader3(tj, rec.bytes.data(), rec.bytes.size(), &w, &h, &sub, &cs), 0);
    EXPECT_EQ(cs, TJCS_YCbCr) << i;
    EXPECT_FALSE(is_progressive_jpeg(rec.bytes)) << i;
    EXPECT_EQ(static_cast<uint32_t>(w), rec.width);
    EXPECT_EQ(static_cast<uint32_t>(h), rec.height);
  }
  tjDestroy(tj);
  EXPECT_EQ(ds.read(0).label, 0);
  EXPECT_EQ(ds.read(6).label, 1);
  EXPECT_EQ(ds.read(6).height, 1200u);  // kept as is without --max-side
}

TEST_F(PackImagesTest, OriginalBytesKeptUnlessReencoding) {
  pack("keep/train");
  Dataset ds(expand_globs({(dir_ / "keep/train-*.h5").string()}));
  Record first = ds.read(0);
  std::string want = jpeg(60, 80);
  EXPECT_EQ(std::string(first.bytes.begin(), first.bytes.end()), want);
  ImageCheckOptions small;
  small.max_side = 256;
  PackResult r = pack("small/train", small);
  EXPECT_TRUE(mentions(r.converted, "g_large.jpg", "downscaled to max side 256"));
  Dataset ds2(expand_globs({(dir_ / "small/train-*.h5").string()}));
  EXPECT_EQ(ds2.read(6).width, 256u);
  EXPECT_EQ(ds2.read(6).height, 192u);
}

TEST_F(PackImagesTest, SkipPolicySkipsConvertibleSources) {
  ImageCheckOptions skip;
  skip.convert = false;
  PackResult r = pack("skip/train", skip);
  EXPECT_EQ(r.records, 3);  // good, tiny, large
  EXPECT_TRUE(mentions(r.skipped, "e_png.JPEG", "--on-bad skip"));
  EXPECT_EQ(r.skipped.size(), 8u);
}

TEST_F(PackImagesTest, OneAndThreeRanksWriteIdenticalShards) {
  PackResult one = pack("one/train");
  std::vector<std::string> skipped;
  for (int rank = 0; rank < 3; ++rank) {
    PackResult part = pack("three/train", {}, rank, 3);
    skipped.insert(skipped.end(), part.skipped.begin(), part.skipped.end());
  }
  EXPECT_EQ(skipped.size(), one.skipped.size());
  for (const auto& f : one.written) {
    fs::path other = dir_ / "three" / fs::path(f).filename();
    std::ifstream a(f, std::ios::binary), b(other, std::ios::binary);
    std::string sa((std::istreambuf_iterator<char>(a)), {}),
        sb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_EQ(sa, sb) << f;
  }
}

TEST_F(PackImagesTest, JftListProblemsAreNamedAndSkipped) {
  write(dir_ / "jft" / "img" / "x.jpg", jpeg(32, 32));
  write(dir_ / "jft" / "img" / "y.jpg", jpeg(32, 48));
  write(dir_ / "jft" / "list.tsv",
        "img/x.jpg\t1,5\n"
        "img/y.jpg\t2\t0.5\n"
        "img/x.jpg\t3\n"           // duplicate path
        "img/y.jpg\t9\n"           // label out of range
        "no-tabs-here\n"           // malformed
        "img/y.jpg\t1,2\t1.0\n");  // weights count differs
  SourceListing l = list_jft((dir_ / "jft" / "list.tsv").string(), 8);
  ASSERT_EQ(l.entries.size(), 2u);
  ASSERT_EQ(l.problems.size(), 4u);
  EXPECT_NE(l.problems[0].find("list.tsv:3: duplicate path img/x.jpg"), std::string::npos)
      << l.problems[0];
  EXPECT_NE(l.problems[1].find("label 9 outside [0, 8)"), std::string::npos);
  EXPECT_NE(l.problems[2].find("list.tsv:5: expected path<TAB>labels"), std::string::npos);
  EXPECT_NE(l.problems[3].find("weights and labels differ"), std::string::npos);
  PackOptions o;
  o.progress = false;
  pack_images(l, (dir_ / "jft/out").string(), o, {});
  Dataset ds(expand_globs({(dir_ / "jft/out-*.h5").string()}));
  EXPECT_TRUE(ds.meta().multi_label);
  EXPECT_EQ(ds.read(0).labels, (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(ds.read(1).label_weights, (std::vector<float>{0.5f}));
}
