// Multiply-accumulate counting for `coatnet info`: modules report the MACs of their convs,
// linears and attention products while a MacCounter is alive on this thread. Outside of one
// the cost is a thread-local load and a branch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace coatnet::model {

class MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  int64_t total() const { return total_; }

  static bool active();
  static void add(int64_t macs);

 private:
  int64_t total_ = 0;
  MacCounter* previous_;
};

// MACs of a convolution that produced `out` from weight `w` (groups folded into w's shape).
void count_conv(const at::Tensor& w, const at::Tensor& out);
// MACs of a matmul-like op with this many output elements, each a dot product of length k.
void count_dot(int64_t outputs, int64_t k);

}  // namespace coatnet::model
