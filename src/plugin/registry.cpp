#include "plugin/registry.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "plugin/abi.h"
#include "util/text.h"

namespace coatnet::plugin {

namespace fs = std::filesystem;

namespace {

struct Loaded {
  PluginInfo info;
  const Descriptor* descriptor = nullptr;
  std::shared_ptr<boost::dll::shared_library> library;  // kept loaded for the process
};

struct State {
  std::vector<Loaded> loaded;
  std::vector<PluginInfo> infos;
  std::vector<Rejected> rejected;
};

bool is_library(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.find(".so") != std::string::npos || p.extension() == ".dylib";
}

void load_one(State& s, const fs::path& path) {
  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::dll::fs::error_code ec;
  lib->load(path.string(), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) {
    s.rejected.push_back({path.string(), "cannot be loaded: " + ec.message()});
    return;
  }
  if (!lib->has("coatnet_plugin")) {
    s.rejected.push_back({path.string(), "is not a coatnet plugin (no coatnet_plugin symbol)"});
    return;
  }
  const Descriptor* d = lib->get_alias<DescribeFn>("coatnet_plugin")();
  if (d == nullptr || d->abi != COATNET_PLUGIN_ABI) {
    s.rejected.push_back(
        {path.string(), "was built for plugin ABI " + std::to_string(d ? d->abi : -1) +
                            ", this coatnet needs ABI " + std::to_string(COATNET_PLUGIN_ABI) +
                            " (rebuild the plugin against this version)"});
    return;
  }
  for (const Loaded& l : s.loaded)
    if (l.info.kind == d->kind && l.info.name == d->name) return;  // earlier folders win
  Loaded l;
  l.info = {d->kind, d->name, d->version, d->summary, path.string(), d->abi};
  l.descriptor = d;
  l.library = std::move(lib);
  s.infos.push_back(l.info);
  s.loaded.push_back(std::move(l));
}

// Never destroyed: plugin code must stay mapped until the very end of the process (objects it
// made may be destroyed by atexit handlers, after static destructors would have unloaded it).
State& state() {
  static State* s = [] {
    auto* st_ptr = new State();
    State& st = *st_ptr;
    for (const std::string& dir : search_path()) {
      std::error_code ec;
      if (!fs::is_directory(dir, ec)) continue;
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file() && is_library(e.path())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) load_one(st, f);
    }
    return st_ptr;
  }();
  return *s;
}

}  // namespace

std::vector<std::string> search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("COATNET_PLUGIN_PATH")) {
    std::string all = env;
    size_t start = 0;
    while (start <= all.size()) {
      size_t end = all.find(':', start);
      if (end == std::string::npos) end = all.size();
      if (end > start) dirs.push_back(all.substr(start, end - start));
      start = end + 1;
    }
  }
  const fs::path exe_dir = boost::dll::program_location().parent_path().string();
  dirs.push_back((exe_dir.parent_path() / "lib" / "coatnet" / "plugins").string());
  return dirs;
}

const std::vector<PluginInfo>& available() {
  return state().infos;
}
const std::vector<Rejected>& rejected() {
  return state().rejected;
}

std::vector<std::string> names_of(const std::string& kind) {
  std::vector<std::string> out;
  for (const PluginInfo& p : available())
    if (p.kind == kind) out.push_back(p.name);
  return out;
}

void* create_raw(const std::string& kind, const std::string& name, const void* args,
                 const std::string& config_key) {
  for (const Loaded& l : state().loaded)
    if (l.info.kind == kind && l.info.name == name) return l.descriptor->create(args);
  std::string msg = config_key + " = '" + name + "' is not an available " + kind + " plugin";
  const auto names = names_of(kind);
  msg += names.empty() ? "; none was found" : "; available: " + text::join(names, ", ");
  for (const Rejected& r : rejected()) msg += "\n  not used: " + r.path + " " + r.reason;
  msg += "\n  searched: " + text::join(search_path(), ":") +
         " (add folders with COATNET_PLUGIN_PATH; list with `coatnet plugins`)";
  throw std::invalid_argument(msg);
}

}  // namespace coatnet::plugin
