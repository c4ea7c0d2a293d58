#include "model/weights.h"

#include <ATen/ATen.h>

#include <map>
#include <sstream>

#include "model/relpos.h"
#include "util/text.h"

namespace coatnet::model {

namespace {

const std::string kTableSuffix = "relative_position_bias_table";
const std::string kCounterSuffix = ".num_batches_tracked";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

// The grid of the RelPosBias module owning `name`.
std::pair<int64_t, int64_t> owner_grid(torch::nn::Module& m, const std::string& name) {
  std::string owner = name.substr(0, name.size() - kTableSuffix.size() - 1);
  for (const auto& item : m.named_modules())
    if (item.key() == owner)
      if (auto* r = item.value()->as<RelPosBias>()) return {r->h, r->w};
  throw WeightsError("no relative position module owns '" + name + "'");
}

}  // namespace

NamedTensors state_dict(const torch::nn::Module& m) {
  NamedTensors out;
  for (const auto& p : m.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

LoadReport load_state_dict(torch::nn::Module& m, const NamedTensors& tensors,
                           const std::string& source) {
  std::map<std::string, at::Tensor> own;
  std::vector<std::string> own_names;
  for (auto& [name, t] : state_dict(m)) {
    own[name] = t;
    own_names.push_back(name);
  }
  std::map<std::string, const at::Tensor*> given;
  for (const auto& [name, t] : tensors) given[name] = &t;

  LoadReport report;
  std::vector<std::string> problems;
  for (const auto& name : own_names) {
    if (given.count(name)) continue;
    // As PyTorch's BatchNorm loads a state_dict: a missing step counter starts at 0 (converted
    // and trimmed checkpoints often lack it). Any other missing tensor is an error.
    if (ends_with(name, kCounterSuffix)) {
      report.counters_zeroed.push_back(name);
      continue;
    }
    problems.push_back("missing tensor '" + name + "'");
  }
  for (const auto& [name, t] : given)
    if (!own.count(name))
      problems.push_back("unexpected tensor '" + name + "'" + text::did_you_mean(name, own_names));

  std::map<std::string, at::Tensor> ready;
  for (const auto& [name, t] : given) {
    auto it = own.find(name);
    if (it == own.end()) continue;
    at::Tensor src = *t;
    const at::Tensor& dst = it->second;
    if (src.sizes() != dst.sizes() && ends_with(name, kTableSuffix) && src.dim() == 2 &&
        dst.dim() == 2 && src.size(1) == dst.size(1)) {
      auto grid = owner_grid(m, name);
      try {
        src = resize_bias_table(src.to(at::kFloat), table_grid(src.size(0), grid), grid);
        report.resized.push_back(name);
      } catch (const std::exception& e) {
        problems.push_back("tensor '" + name + "': " + e.what());
        continue;
      }
    }
    if (src.sizes() != dst.sizes()) {
      problems.push_back("tensor '" + name + "' has shape " + shape_str(src.sizes()) +
                         ", the model expects " + shape_str(dst.sizes()));
      continue;
    }
    if (!at::isFloatingType(dst.scalar_type()) && at::isFloatingType(src.scalar_type())) {
      problems.push_back("tensor '" + name + "' is floating point, the model expects " +
                         std::string(c10::toString(dst.scalar_type())));
      continue;
    }
    ready[name] = src;
  }
  if (!problems.empty()) {
    std::string msg = source + ": " + std::to_string(problems.size()) +
                      " problem(s) loading weights into the model:";
    for (size_t i = 0; i < problems.size() && i < 12; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 12)
      msg += "\n  ... and " + std::to_string(problems.size() - 12) + " more";
    msg += "\n  hint: are these weights for this --model and --image-size/--num-classes?";
    throw WeightsError(msg);
  }
  at::NoGradGuard no_grad;
  for (auto& [name, src] : ready) own[name].copy_(src);
  for (const auto& name : report.counters_zeroed) own[name].zero_();
  return report;
}

LoadReport load_weights(torch::nn::Module& m, const std::string& path) {
  SafetensorsFile f = read_safetensors(path);
  return load_state_dict(m, f.tensors, path);
}

void save_weights(const torch::nn::Module& m, const std::string& path) {
  write_safetensors(path, state_dict(m), {{"format", "pt"}});
}

}  // namespace coatnet::model
