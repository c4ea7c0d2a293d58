// Finding and loading plugins: every shared library in build/lib/coatnet/plugins (next to the
// executable: <bin>/../lib/coatnet/plugins) and in the folders of COATNET_PLUGIN_PATH
// (colon-separated, searched first). A library that is not a coatnet plugin or was built for
// another ABI is not used, and the reason is shown by `coatnet plugins` and in errors.
//
//   auto p = plugin::create<train::Precision>("precision", "bf16", &scaler_options);
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace coatnet::plugin {

struct PluginInfo {
  std::string kind, name, version, summary, path;
  int abi = 0;
};

struct Rejected {
  std::string path, reason;
};

// Loaded once per process, on first use.
const std::vector<PluginInfo>& available();
const std::vector<Rejected>& rejected();
std::vector<std::string> search_path();
std::vector<std::string> names_of(const std::string& kind);

// A new object of plugin `name` of `kind`; throws std::invalid_argument naming the available
// plugins of that kind (and any rejected ones) when there is none by that name.
void* create_raw(const std::string& kind, const std::string& name, const void* args,
                 const std::string& config_key);

template <typename T>
std::unique_ptr<T> create(const std::string& kind, const std::string& name, const void* args,
                          const std::string& config_key) {
  return std::unique_ptr<T>(static_cast<T*>(create_raw(kind, name, args, config_key)));
}

}  // namespace coatnet::plugin
