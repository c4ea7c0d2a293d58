// train.sync_check's switch (cuda::SyncCheck): c10's sync debug mode, which ATen's synchronising
// operations consult through c10::cuda::warn_or_error_on_sync in libc10_cuda. The mode lives in
// a static of an inline function of c10's headers, so these check that the one this program sets
// is the one the library reads (on a CPU too), and on a GPU that the copies the training step
// makes are caught only where they would wait.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>
#include <vector>

#include "cuda/sync_check.h"

using namespace coatnet;

namespace {

struct Warnings : c10::WarningHandler {
  std::vector<std::string> seen;
  void process(const c10::Warning& w) override { seen.push_back(w.msg()); }
};

bool sync_throws() {
  try {
    c10::cuda::warn_or_error_on_sync();
    return false;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("synchronizing CUDA operation"), std::string::npos);
    return true;
  }
}

}  // namespace

TEST(SyncCheck, SetsTheModeAtenReadsAndRestoresIt) {
  ASSERT_FALSE(sync_throws());
  {
    const cuda::SyncCheck check("error");
    EXPECT_TRUE(sync_throws());
    {
      const cuda::SyncCheck off("off");  // changes nothing
      EXPECT_TRUE(sync_throws());
    }
    EXPECT_TRUE(sync_throws());
  }
  EXPECT_FALSE(sync_throws());
  Warnings warnings;
  {
    const c10::WarningUtils::WarningHandlerGuard guard(&warnings);
    const cuda::SyncCheck check("warn");
    EXPECT_FALSE(sync_throws());
  }
  ASSERT_EQ(warnings.seen.size(), 1u);
  EXPECT_NE(warnings.seen[0].find("synchronizing CUDA operation"), std::string::npos);
  EXPECT_FALSE(sync_throws());
  EXPECT_THROW(cuda::SyncCheck("sometimes"), std::invalid_argument);
}

TEST(SyncCheck, CatchesACopyFromPageableMemoryOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: nothing waits for a GPU here";
  const at::Device gpu(at::kCUDA, 0);
  const at::Tensor pageable = at::arange(16, at::kLong);
  const at::Tensor pinned = pageable.pin_memory();
  const cuda::SyncCheck check("error");
  // From pinned memory the copy is queued on the stream; from pageable memory ATen waits for it.
  at::Tensor on_gpu = pinned.to(gpu, /*non_blocking=*/true);
  EXPECT_THROW(pageable.to(gpu), c10::Error);
  EXPECT_THROW((void)on_gpu.sum().item<int64_t>(), c10::Error);
}
