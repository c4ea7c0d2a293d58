// The resolved configuration: schema defaults, then a YAML file, then `--set a.b=c` overrides,
// each value checked against the schema. Errors name the key path, the value, the source and
// what was expected.
//
//   auto cfg = Config::load("configs/demo_fashion_mnist.yaml", {"optim.lr=5e-4"});
//   double lr = cfg.get_float("optim.lr");
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace YAML {
class Node;
}

namespace coatnet::config {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Value = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                           std::vector<double>, std::vector<std::string>>;

class Config {
 public:
  static Config defaults();
  // Defaults, then the file (if not empty), then each "a.b=c" override in order.
  static Config load(const std::string& yaml_path, const std::vector<std::string>& overrides);

  void merge_file(const std::string& yaml_path);
  void merge_yaml(const YAML::Node& root, const std::string& source);
  void set(const std::string& assignment);  // "a.b=c"; c is read as YAML, typed by the schema

  bool get_bool(const std::string& path) const;
  int64_t get_int(const std::string& path) const;
  double get_float(const std::string& path) const;
  const std::string& get_string(const std::string& path) const;
  const std::vector<int64_t>& get_ints(const std::string& path) const;
  const std::vector<double>& get_floats(const std::string& path) const;
  const std::vector<std::string>& get_strings(const std::string& path) const;

  // Resolved config as YAML, grouped by section, each key with its one-line doc.
  std::string dump() const;
  // The recipe keys (schema: KeySpec::recipe) and their values as dump() writes them.
  std::map<std::string, std::string> recipe() const;

 private:
  void assign(const std::string& path, const YAML::Node& node, const std::string& source);
  const Value& at(const std::string& path) const;
  const int64_t& get_int_ref(const std::string& path) const;
  const double& get_float_ref(const std::string& path) const;
  const bool& get_bool_ref(const std::string& path) const;

  std::map<std::string, Value> values_;
};

}  // namespace coatnet::config
