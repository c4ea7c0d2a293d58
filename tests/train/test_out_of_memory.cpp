// train::out_of_memory_message: a failed allocation, on a CPU for real and CUDA's error as the
// caching allocator throws it, becomes its message plus what to change (named with the run's
// values); any other error is left alone.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "config/config.h"
#include "train/out_of_memory.h"

using namespace coatnet;

namespace {

config::Config with(const std::vector<std::string>& sets) {
  return config::Config::load("", sets);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST(OutOfMemory, ACpuAllocationThatFailsIsExplained) {
  std::string message;
  bool refused = false;
  try {
    (void)at::empty({int64_t{1} << 44}, at::kFloat);  // 64 TiB
  } catch (const std::exception& e) {
    refused = true;
    message = train::out_of_memory_message(e, with({"data.batch_size=8"}), "c.yaml", 1);
    EXPECT_FALSE(has(message, "Exception raised from")) << "no C++ backtrace: " << message;
  }
  if (!refused) GTEST_SKIP() << "the kernel granted 64 TiB (memory overcommit is on)";
  EXPECT_TRUE(has(message, "can't allocate memory")) << message;
  EXPECT_TRUE(has(message, "out of memory on the CPU: a step of data.batch_size = 8")) << message;
  EXPECT_TRUE(has(message, "precision.backend = auto (fp32)")) << message;
}

TEST(OutOfMemory, CudaErrorGetsTheRunsValuesAndWhatToChange) {
  const config::Config cfg = with({"data.batch_size=256", "optim.accum_steps=2", "optim.zero=0"});
  try {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory. Tried to allocate 2.00 GiB");
  } catch (const std::exception& e) {
    const std::string m = train::out_of_memory_message(e, cfg, "configs/c0.yaml", 4);
    EXPECT_TRUE(has(m, "CUDA out of memory. Tried to allocate 2.00 GiB\nout of memory on the GPU"))
        << m;
    EXPECT_TRUE(has(m,
                    "data.batch_size = 256 (64 images per rank at 4 ranks, "
                    "optim.accum_steps = 2), model.image_size = 224, "
                    "precision.backend = auto (bf16)"))
        << m;
    EXPECT_FALSE(has(m, "--set precision.backend=bf16")) << "bf16 already: " << m;
    EXPECT_TRUE(has(m,
                    "--set data.batch_size=128 --set optim.accum_steps=4: the same 512 images "
                    "per optimizer step, in 4 micro-steps"))
        << m;
    EXPECT_TRUE(has(m, "--set optim.zero=1")) << m;
    EXPECT_TRUE(has(m,
                    "coatnet info --config configs/c0.yaml --batch 256 --world-size 4 "
                    "--precision bf16"))
        << m;
    EXPECT_TRUE(has(m, "--resume auto")) << m;
  }
}

TEST(OutOfMemory, OnlyTheChangesThatApplyAreNamed) {
  const std::string m = train::out_of_memory_hint(
      with({"data.batch_size=3", "precision.backend=fp32", "checkpoint.enabled=false"}), "", 3,
      true);
  EXPECT_TRUE(has(m, "--set precision.backend=bf16")) << m;
  EXPECT_FALSE(has(m, "--set data.batch_size")) << "one image per rank already: " << m;
  EXPECT_FALSE(has(m, "--resume")) << "no checkpoints: " << m;
  EXPECT_TRUE(has(m, "coatnet info --batch 3 --world-size 3 --precision bf16")) << m;
  EXPECT_FALSE(has(m, "optim.zero")) << "auto: ZeRO-1 already at 3 ranks: " << m;
  // The batch split stays divisible by the world size and keeps the optimizer's batch: 6 at 2
  // ranks (3 per rank) → 2 images in 3 micro-steps, not 2 in 2 (4 images).
  const std::string odd = train::out_of_memory_hint(with({"data.batch_size=6"}), "", 2, true);
  EXPECT_TRUE(has(odd, "--set data.batch_size=2 --set optim.accum_steps=3: the same 6 images"))
      << odd;
}

TEST(OutOfMemory, OtherErrorsAreLeftAlone) {
  const config::Config cfg = config::Config::defaults();
  EXPECT_EQ(train::out_of_memory_message(std::runtime_error("can't allocate memory"), cfg, "", 1),
            "")
      << "not an allocator's error";
  try {
    TORCH_CHECK(false, "Expected all tensors to be on the same device");
  } catch (const std::exception& e) {
    EXPECT_EQ(train::out_of_memory_message(e, cfg, "", 1), "");
  }
}
