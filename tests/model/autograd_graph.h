// What the model tests ask of an autograd graph: which nodes lie behind a tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/function.h>

#include <set>
#include <string>
#include <vector>

namespace coatnet::test {

// The autograd nodes behind y whose name contains `name`.
inline int graph_count(const at::Tensor& y, const std::string& name) {
  std::vector<torch::autograd::Node*> todo{y.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int count = 0;
  while (!todo.empty()) {
    torch::autograd::Node* n = todo.back();
    todo.pop_back();
    if (!n || !seen.insert(n).second) continue;
    if (n->name().find(name) != std::string::npos) ++count;
    for (const auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return count;
}

inline bool graph_has(const at::Tensor& y, const std::string& name) {
  return graph_count(y, name) > 0;
}

}  // namespace coatnet::test
