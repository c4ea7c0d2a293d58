// The host side's choice of a kernel instance, shared by the kernels of src/cuda whose threads
// own packs of V neighbouring channels of a channels-last activation: the element type of the
// executor (Exec::BFloat16, Exec::Half: CUDA's types for the kernels, c10's for the CPU
// emulations) and the widest pack the channels and the pointers allow.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace coatnet::cuda {

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

// Calls f(T{}, std::integral_constant<int, V>{}) for x's element type and the widest V (16
// bytes) that divides x's channels (dim 1) and keeps every pointer 16-byte aligned, else V = 1.
// `what` names the operation in the error for another dtype.
template <typename Exec, typename F>
void dispatch(const at::Tensor& x, const char* what, std::initializer_list<const void*> pointers,
              F&& f) {
  bool aligned = true;
  for (const void* p : pointers) aligned = aligned && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  auto with = [&](auto zero) {
    constexpr int kWide = 16 / sizeof(decltype(zero));
    if (aligned && x.size(1) % kWide == 0)
      f(zero, std::integral_constant<int, kWide>{});
    else
      f(zero, std::integral_constant<int, 1>{});
  };
  switch (x.scalar_type()) {
    case at::kFloat:
      return with(float{});
    case at::kBFloat16:
      return with(typename Exec::BFloat16{});
    case at::kHalf:
      return with(typename Exec::Half{});
    default:
      TORCH_CHECK(false, what, ": activations of dtype ", x.scalar_type(),
                  " are not supported (float32, bfloat16, float16 are)");
  }
}

}  // namespace coatnet::cuda
