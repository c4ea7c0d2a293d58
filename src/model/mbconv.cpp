#include "model/mbconv.h"

#include <ATen/ATen.h>

#include "model/bn_fold.h"

namespace coatnet::model {

MbConvImpl::MbConvImpl(const MbConvOptions& o) : options(o) {
  const ConvBlockSpec& s = o.spec();
  int mid = make_divisible((s.expand_output ? o.out() : o.in()) * s.expand_ratio);
  if (o.stride() == 2 || o.in() != o.out())  // stride 1: a width change, projected
    shortcut = register_module(
        "shortcut",
        Downsample2d(
            Downsample2dOptions(o.in(), o.out()).bias(s.output_bias).pool(o.stride() == 2)));
  int stride_1x1 = s.stride_mode == StrideMode::Conv1x1 ? o.stride() : 1;
  int stride_dw = s.stride_mode == StrideMode::Dw ? o.stride() : 1;
  pre_norm = register_module("pre_norm", make_bn(o.in(), s.bn_eps));
  conv1_1x1 = register_module("conv1_1x1", make_conv(o.in(), mid, 1, stride_1x1));
  norm1 = register_module("norm1", make_bn(mid, s.bn_eps));
  conv2_kxk = register_module("conv2_kxk", make_conv(mid, mid, 3, stride_dw, false, mid));
  int reduced = static_cast<int>(s.se_ratio * (s.expand_output ? o.out() : mid));
  se = SqueezeExcite(SqueezeExciteOptions(mid, reduced).act(s.se_act));
  // timm registers se_early before norm2 and se after it; the order decides state_dict order.
  if (s.se_early) register_module("se_early", se);
  norm2 = register_module("norm2", make_bn(mid, s.bn_eps));
  if (!s.se_early) register_module("se", se);
  conv3_1x1 = register_module("conv3_1x1", make_conv(mid, o.out(), 1, 1, s.output_bias));
}

at::Tensor MbConvImpl::forward(const at::Tensor& x) {
  const ConvBlockSpec& s = options.spec();
  at::Tensor shortcut_x = shortcut ? shortcut->forward(x) : x;
  const bool pooled = s.stride_mode == StrideMode::Pool && options.stride() == 2;
  at::Tensor y;
  if (!s.pre_norm_act && !pooled && takes_bn_fold(*pre_norm, *conv1_1x1, *norm1, x)) {
    y = activate(bn_conv_bn(*pre_norm, *conv1_1x1, *norm1, x), s.act);  // one matrix product
  } else {
    y = s.pre_norm_act ? batch_norm_act(pre_norm, x, s.act) : batch_norm(pre_norm, x);
    if (pooled) y = avg_pool_2x2(y);
    y = batch_norm_act(norm1, conv(conv1_1x1, y), s.act);
  }
  y = conv(conv2_kxk, y);
  if (s.se_early) {
    y = conv(conv3_1x1, batch_norm_act(norm2, se->forward(y), s.act));
  } else {
    auto [z, mean] = batch_norm_act_mean(norm2, y, s.act);  // mean: the squeeze-excitation's
    const at::Tensor gate = se->gate_of_mean(mean);
    y = takes_se_fold(*conv3_1x1, z)
            ? gated_pointwise_conv(conv3_1x1, z, gate)  // the gate in the projection's weights
            : conv(conv3_1x1, z * gate);
  }
  return drop_path(y, options.drop_path(), is_training()) + shortcut_x;
}

}  // namespace coatnet::model
