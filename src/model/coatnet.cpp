#include "model/coatnet.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "model/macs.h"
#include "model/mbconv.h"
#include "model/transformer.h"

namespace coatnet::model {

StageImpl::StageImpl(const StageOptions& o) {
  blocks = torch::nn::Sequential();
  for (int i = 0; i < o.depth(); ++i) {
    const int stride = i == 0 ? o.stride() : 1;
    const int block_in = i == 0 ? o.in() : o.out();
    const double drop = o.drop_path().empty() ? 0.0 : o.drop_path().at(i);
    switch (o.type()) {
      case BlockType::MBConv:
        blocks->push_back(
            MbConv(MbConvOptions(block_in, o.out(), stride).drop_path(drop).spec(o.conv())));
        break;
      case BlockType::Transformer:
        blocks->push_back(TransformerBlock(TransformerOptions(block_in, o.out(), stride, o.grid())
                                               .drop_path(drop)
                                               .spec(o.transformer())));
        break;
    }
  }
  register_module("blocks", blocks);
}

PreLogitsImpl::PreLogitsImpl(int in, int hidden) {
  fc = register_module("fc", torch::nn::Linear(in, hidden));
}

HeadImpl::HeadImpl(const HeadOptions& o) : drop_rate(o.drop_rate()) {
  int features = o.in();
  if (o.hidden() > 0) {
    norm = register_module("norm", LayerNorm2d(LayerNorm2dOptions(o.in()).eps(o.ln_eps())));
    pre_logits = register_module("pre_logits", PreLogits(o.in(), o.hidden()));
    features = o.hidden();
  }
  fc = register_module("fc", torch::nn::Linear(features, o.classes()));
}

at::Tensor HeadImpl::forward(const at::Tensor& x) {
  at::Tensor y = spatial_mean(x);
  if (norm) y = norm->forward(y);
  y = y.flatten(1);
  if (pre_logits) y = pre_logits->forward(y);
  y = row_dropout(y, drop_rate, is_training());
  return linear(fc, y);
}

CoAtNetImpl::CoAtNetImpl(const ModelSpec& s) : spec(s) {
  spec.validate();
  stem = register_module("stem", Stem(spec.in_chans, spec.stem_widths, spec.conv));
  // Stochastic depth grows linearly with block index over the whole network.
  int total = 0;
  for (int d : spec.depths) total += d;
  std::vector<double> rates(total);
  for (int i = 0; i < total; ++i) rates[i] = total > 1 ? spec.drop_path * i / (total - 1) : 0.0;

  stages = register_module("stages", torch::nn::ModuleList());
  int in = spec.stem_widths.back(), grid = spec.image_size / 2, first = 0;
  for (size_t i = 0; i < spec.layout.size(); ++i) {
    grid /= spec.stride(i);
    std::vector<double> stage_rates(rates.begin() + first, rates.begin() + first + spec.depths[i]);
    stages->push_back(Stage(StageOptions(in, spec.widths[i], spec.block_type(i), spec.depths[i])
                                .stride(spec.stride(i))
                                .grid(grid)
                                .drop_path(stage_rates)
                                .conv(spec.conv)
                                .transformer(spec.transformer)));
    in = spec.widths[i];
    first += spec.depths[i];
  }
  if (spec.head_hidden == 0)
    norm =
        register_module("norm", LayerNorm2d(LayerNorm2dOptions(in).eps(spec.transformer.ln_eps)));
  head = register_module("head", Head(HeadOptions(in, spec.num_classes)
                                          .hidden(spec.head_hidden)
                                          .drop_rate(spec.drop_rate)
                                          .ln_eps(spec.transformer.ln_eps)));
  init_weights();
}

at::Tensor CoAtNetImpl::forward_features(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == spec.in_chans, "expected input (B,", spec.in_chans,
              ",H,W), got ", x.sizes());
  at::Tensor y = stem->forward(x);
  for (auto& stage : *stages) y = stage->as<Stage>()->forward(y);
  return norm ? norm->forward(y) : y;
}

at::Tensor CoAtNetImpl::forward(const at::Tensor& x) {
  return head->forward(forward_features(x));
}

void CoAtNetImpl::init_weights() {
  at::NoGradGuard no_grad;
  auto init_conv_block = [](torch::nn::Module& block) {
    for (auto& m : block.modules(/*include_self=*/true)) {
      if (auto* c = m->as<torch::nn::Conv2d>()) {
        // weight: (out, in/groups, kh, kw); fan_out = kh*kw*out/groups as in EfficientNet.
        const at::Tensor& w = c->weight;
        double fan_out =
            static_cast<double>(w.size(0) * w.size(2) * w.size(3)) / c->options.groups();
        c->weight.normal_(0.0, std::sqrt(2.0 / fan_out));
        if (c->bias.defined()) c->bias.zero_();
      }
    }
  };
  init_conv_block(*stem);
  for (auto& stage : *stages) {
    for (auto& block : *stage->as<Stage>()->blocks) {
      if (block.ptr()->as<MbConv>()) {
        init_conv_block(*block.ptr());
        continue;
      }
      for (auto& m : block.ptr()->modules(true)) {
        if (auto* c = m->as<torch::nn::Conv2d>()) {
          torch::nn::init::xavier_uniform_(c->weight);
          if (c->bias.defined()) c->bias.zero_();
        } else if (auto* r = m->as<RelPosBias>()) {
          r->table.normal_(0.0, 0.02).clamp_(-0.04, 0.04);
        }
      }
    }
  }
}

std::vector<StageShape> stage_shapes(const ModelSpec& spec) {
  std::vector<StageShape> out;
  int side = spec.image_size / 2;
  out.push_back({"stem", spec.stem_widths.back(), side, side});
  for (size_t i = 0; i < spec.layout.size(); ++i) {
    side /= spec.stride(i);
    out.push_back({"stages." + std::to_string(i), spec.widths[i], side, side});
  }
  return out;
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

int64_t count_macs(CoAtNet& net) {
  at::NoGradGuard no_grad;
  bool was_training = net->is_training();
  net->eval();
  MacCounter counter;
  const auto& s = net->spec;
  net->forward(at::zeros({1, s.in_chans, s.image_size, s.image_size}));
  net->train(was_training);
  return counter.total();
}

}  // namespace coatnet::model
