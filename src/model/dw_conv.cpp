#include "model/dw_conv.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>
#include <variant>

namespace coatnet::model {

namespace {

// std::arrays, not IntArrayRefs of braced lists: those would point at temporaries.
const std::array<int64_t, 2> kStride{2, 2}, kPadding{1, 1}, kDilation{1, 1}, kNoOutputPadding{0, 0};

at::Tensor reference_input_grad(const at::Tensor& dy, const at::Tensor& weight,
                                at::IntArrayRef input_sizes) {
  const at::Tensor x =
      at::empty(input_sizes, dy.options().memory_format(at::MemoryFormat::ChannelsLast));
  auto [dx, dw, db] = at::convolution_backward(dy, x, weight, std::nullopt, kStride, kPadding,
                                               kDilation, /*transposed=*/false, kNoOutputPadding,
                                               weight.size(0), {true, false, false});
  return dx.contiguous(at::MemoryFormat::ChannelsLast);
}

bool reference_applies(const at::Tensor&) {
  return true;
}

const DwConvKernels* g_kernels = nullptr;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// x and weight in one dtype already (autocast's, cast outside: see dw_conv_s2).
struct DwConvS2Function : public torch::autograd::Function<DwConvS2Function> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const DwConvKernels* k) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["kernels"] = reinterpret_cast<int64_t>(k);
    return at::convolution(x, weight, std::nullopt, kStride, kPadding, kDilation, false,
                           kNoOutputPadding, weight.size(0));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto* k = reinterpret_cast<const DwConvKernels*>(ctx->saved_data["kernels"].toInt());
    const at::Tensor &x = saved[0], &weight = saved[1];
    const at::Tensor dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = k->input_grad(dy, weight, x.sizes());
    at::Tensor dw;
    if (ctx->needs_input_grad(1))
      dw = std::get<1>(at::convolution_backward(dy, x, weight, std::nullopt, kStride, kPadding,
                                                kDilation, false, kNoOutputPadding, weight.size(0),
                                                {false, true, false}));
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

const DwConvKernels& dw_conv_reference() {
  static const DwConvKernels k{reference_input_grad, reference_applies};
  return k;
}

void set_dw_conv_kernels(const DwConvKernels* kernels) {
  g_kernels = kernels;
}

const DwConvKernels* dw_conv_kernels() {
  return g_kernels;
}

bool takes_dw_conv_s2(const torch::nn::Conv2dImpl& c, const at::Tensor& x) {
  const auto& o = c.options;
  const auto pair = [](const auto& v, int64_t a) {
    return v->size() == 2 && (*v)[0] == a && (*v)[1] == a;
  };
  const auto* padding = std::get_if<torch::ExpandingArray<2>>(&o.padding());
  return g_kernels && at::GradMode::is_enabled() && x.dim() == 4 &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast) && !c.bias.defined() &&
         o.groups() == o.in_channels() && o.in_channels() == o.out_channels() &&
         x.size(1) == o.in_channels() && pair(o.kernel_size(), 3) && pair(o.stride(), 2) &&
         padding && pair(*padding, 1) && pair(o.dilation(), 1) &&
         std::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()) && g_kernels->applies(x);
}

at::Tensor dw_conv_s2(const DwConvKernels& kernels, torch::nn::Conv2dImpl& c, const at::Tensor& x) {
  // Autocast would cast the convolution's operands inside forward, where the backward could not
  // see it; cast them here, so that the saved tensors are what the convolution computed with
  // and the weight's gradient goes back through the cast.
  const c10::DeviceType device = x.device().type();
  const at::ScalarType dtype = at::autocast::is_autocast_enabled(device)
                                   ? at::autocast::get_autocast_dtype(device)
                                   : x.scalar_type();
  return DwConvS2Function::apply(x.to(dtype), c.weight.to(dtype), &kernels);
}

}  // namespace coatnet::model
