// The serial CPU executor of the depthwise stride-2 input gradient (dw_conv_launch.h): every
// block and thread of the CUDA launch geometry, one after another, running the kernel's thread
// body. Built with or without nvcc, so CI checks the kernel's indexing.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "cuda/dw_conv.h"
#include "cuda/dw_conv_launch.h"

namespace coatnet::cuda {

namespace {

using namespace dw_conv;

struct EmulatedExec {
  using BFloat16 = c10::BFloat16;
  using Half = c10::Half;

  template <typename T, int V>
  static void input_grad_rows(const Geometry& g, const T* dy, const float* w9, T* dx,
                              const Shape& s) {
    for (int64_t by = 0; by < g.grid_y; ++by)
      for (int64_t bx = 0; bx < g.grid_x; ++bx)
        for (int64_t ty = 0; ty < g.block_y; ++ty)
          for (int64_t tx = 0; tx < g.block_x; ++tx) {
            const Lane l = lane_of(g, bx, by, tx, ty);
            if (l.pack < s.packs) input_grad_lane<T, V>(dy, w9, dx, s, l);
          }
  }
};

bool applies(const at::Tensor& dy) {
  return dy.is_cpu() && takes(dy);
}

}  // namespace

const model::DwConvKernels& dw_conv_emulated() {
  static const model::DwConvKernels k{dw_conv::input_grad<EmulatedExec>, applies};
  return k;
}

}  // namespace coatnet::cuda
