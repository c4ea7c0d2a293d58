// coatnet plugins: what the config can name — every plugin found, with kind, version and path,
// and the libraries that were not used and why.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "plugin/abi.h"
#include "plugin/registry.h"
#include "util/json.h"
#include "util/text.h"

namespace coatnet::cli {

int cmd_plugins(int argc, char** argv) {
  ArgParser p("plugins",
              "List the plugins found in build/lib/coatnet/plugins and in the folders of "
              "COATNET_PLUGIN_PATH (searched first): kind, name (what the config names), "
              "version, file. Libraries that cannot be used are listed with the reason.");
  p.flag("json", "print one JSON object on stdout");
  return run_command(p, argc, argv, [&] {
    const auto& found = plugin::available();
    const auto& bad = plugin::rejected();
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["abi"] = COATNET_PLUGIN_ABI;
      json::Value list = json::Value::array();
      for (const auto& i : found) {
        json::Value o = json::Value::object();
        o["kind"] = i.kind;
        o["name"] = i.name;
        o["version"] = i.version;
        o["abi"] = i.abi;
        o["path"] = i.path;
        o["summary"] = i.summary;
        list.push_back(o);
      }
      out["plugins"] = list;
      json::Value rej = json::Value::array();
      for (const auto& r : bad) {
        json::Value o = json::Value::object();
        o["path"] = r.path;
        o["reason"] = r.reason;
        rej.push_back(o);
      }
      out["rejected"] = rej;
      std::puts(out.dump().c_str());
      return 0;
    }
    std::printf("plugin ABI %d; searched %s\n\n", COATNET_PLUGIN_ABI,
                text::join(plugin::search_path(), ":").c_str());
    std::printf("%-11s %-8s %-8s %s\n", "KIND", "NAME", "VERSION", "SUMMARY");
    for (const auto& i : found)
      std::printf("%-11s %-8s %-8s %s\n             %s\n", i.kind.c_str(), i.name.c_str(),
                  i.version.c_str(), i.summary.c_str(), i.path.c_str());
    if (found.empty()) std::printf("(none found: build them with ninja -C build)\n");
    for (const auto& r : bad) std::printf("\nnot used: %s %s\n", r.path.c_str(), r.reason.c_str());
    return 0;
  });
}

}  // namespace coatnet::cli
