#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <sstream>

#include "config/schema.h"
#include "util/text.h"

namespace coatnet::config {

namespace {

std::string show(const YAML::Node& node) {
  YAML::Emitter e;
  e << YAML::Flow << node;
  return e.c_str();
}

std::string where(const std::string& source, const YAML::Node& node) {
  if (source.rfind("--set", 0) == 0 || node.Mark().is_null()) return source;
  return source + ":" + std::to_string(node.Mark().line + 1);
}

[[noreturn]] void bad_value(const KeySpec& spec, const YAML::Node& node,
                            const std::string& source) {
  throw ConfigError("config error: " + spec.path + " = " + show(node) + " (" + where(source, node) +
                    "): expected " + kind_name(spec));
}

bool parse_bool(const YAML::Node& n, bool* out) {
  if (!n.IsScalar()) return false;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "yes" || s == "on") return *out = true, true;
  if (s == "false" || s == "False" || s == "no" || s == "off") return *out = false, true;
  return false;
}

bool parse_int(const YAML::Node& n, int64_t* out) {
  if (!n.IsScalar()) return false;
  const std::string& s = n.Scalar();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && errno == 0 && *end == '\0') return *out = v, true;
  // Allow integral floats written as 1e4 (step counts are often written that way).
  double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && *end == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15)
    return *out = static_cast<int64_t>(d), true;
  return false;
}

bool parse_float(const YAML::Node& n, double* out) {
  if (!n.IsScalar()) return false;
  const std::string& s = n.Scalar();
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(d)) return false;
  *out = d;
  return true;
}

bool in_range(const KeySpec& spec, double v) {
  return v >= spec.min && v <= spec.max;
}

Value convert(const KeySpec& spec, const YAML::Node& node, const std::string& source) {
  switch (spec.kind) {
    case Kind::Bool: {
      bool b;
      if (!parse_bool(node, &b)) bad_value(spec, node, source);
      return b;
    }
    case Kind::Int: {
      int64_t v;
      if (!parse_int(node, &v) || !in_range(spec, static_cast<double>(v)))
        bad_value(spec, node, source);
      return v;
    }
    case Kind::Float: {
      double v;
      if (!parse_float(node, &v) || !in_range(spec, v)) bad_value(spec, node, source);
      return v;
    }
    case Kind::String:
      if (node.IsNull()) return std::string();
      if (!node.IsScalar()) bad_value(spec, node, source);
      return node.Scalar();
    case Kind::Enum:
      if (!node.IsScalar()) bad_value(spec, node, source);
      for (const auto& c : spec.choices)
        if (c == node.Scalar()) return c;
      throw ConfigError("config error: " + spec.path + " = " + show(node) + " (" +
                        where(source, node) + "): expected " + kind_name(spec) +
                        text::did_you_mean(node.Scalar(), spec.choices));
    case Kind::IntList: {
      if (!node.IsSequence()) bad_value(spec, node, source);
      std::vector<int64_t> out;
      for (const auto& item : node) {
        int64_t v;
        if (!parse_int(item, &v) || !in_range(spec, static_cast<double>(v)))
          bad_value(spec, node, source);
        out.push_back(v);
      }
      return out;
    }
    case Kind::FloatList: {
      if (!node.IsSequence()) bad_value(spec, node, source);
      std::vector<double> out;
      for (const auto& item : node) {
        double v;
        if (!parse_float(item, &v) || !in_range(spec, v)) bad_value(spec, node, source);
        out.push_back(v);
      }
      return out;
    }
    case Kind::StringList: {
      std::vector<std::string> out;
      if (node.IsScalar()) return std::vector<std::string>{node.Scalar()};
      if (!node.IsSequence()) bad_value(spec, node, source);
      for (const auto& item : node) {
        if (!item.IsScalar()) bad_value(spec, node, source);
        out.push_back(item.Scalar());
      }
      return out;
    }
  }
  bad_value(spec, node, source);
}

bool is_section(const std::string& path) {
  for (const auto& k : schema())
    if (k.path.rfind(path + ".", 0) == 0) return true;
  return false;
}

struct Printer {
  std::string operator()(bool b) const { return b ? "true" : "false"; }
  std::string operator()(int64_t i) const { return std::to_string(i); }
  std::string operator()(double d) const {
    std::ostringstream os;
    os << d;
    std::string s = os.str();
    // Keep floats recognisable as floats when read back.
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
  }
  std::string operator()(const std::string& s) const {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << s;
    return e.c_str();
  }
  template <typename T>
  std::string operator()(const std::vector<T>& xs) const {
    std::string out = "[";
    for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + (*this)(xs[i]);
    return out + "]";
  }
};

std::string format_value(const Value& v) {
  return std::visit(Printer{}, v);
}

}  // namespace

Config Config::defaults() {
  Config c;
  for (const auto& spec : schema()) c.assign(spec.path, YAML::Load(spec.default_yaml), "schema");
  return c;
}

Config Config::load(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  Config c = defaults();
  if (!yaml_path.empty()) c.merge_file(yaml_path);
  for (const auto& o : overrides) c.set(o);
  return c;
}

void Config::merge_file(const std::string& yaml_path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_path);
  } catch (const YAML::BadFile&) {
    throw ConfigError("config error: cannot read " + yaml_path +
                      " (does it exist? configs/ has the bundled recipes)");
  } catch (const YAML::Exception& e) {
    throw ConfigError("config error: " + yaml_path + ":" + std::to_string(e.mark.line + 1) +
                      ": not valid YAML: " + e.msg);
  }
  merge_yaml(root, yaml_path);
}

void Config::merge_yaml(const YAML::Node& root, const std::string& source) {
  if (root.IsNull()) return;
  if (!root.IsMap())
    throw ConfigError("config error: " + source + ": the top level must be a mapping of sections");
  // Depth-first walk; a key is either a known leaf, a known section prefix, or an error.
  std::vector<std::pair<std::string, YAML::Node>> stack;
  for (const auto& kv : root) stack.emplace_back(kv.first.as<std::string>(), kv.second);
  while (!stack.empty()) {
    auto [path, node] = stack.back();
    stack.pop_back();
    if (find_key(path)) {
      assign(path, node, source);
    } else if (is_section(path) && node.IsMap()) {
      for (const auto& kv : node)
        stack.emplace_back(path + "." + kv.first.as<std::string>(), kv.second);
    } else if (is_section(path)) {
      throw ConfigError("config error: " + path + " (" + where(source, node) +
                        ") is a section: expected a mapping of its keys, got " + show(node));
    } else {
      throw ConfigError("config error: unknown key '" + path + "' (" + where(source, node) + ")" +
                        text::did_you_mean(path, all_paths()) +
                        "; `coatnet train --print-config` lists every key");
    }
  }
}

void Config::set(const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("config error: --set '" + assignment +
                      "': expected KEY=VALUE, e.g. optim.lr=5e-4");
  std::string path = assignment.substr(0, eq);
  YAML::Node node;
  try {
    node = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError("config error: --set " + assignment + ": value is not valid YAML: " + e.msg);
  }
  if (!find_key(path))
    throw ConfigError("config error: unknown key '" + path + "' (--set)" +
                      text::did_you_mean(path, all_paths()) +
                      "; `coatnet train --print-config` lists every key");
  assign(path, node, "--set " + assignment);
}

void Config::assign(const std::string& path, const YAML::Node& node, const std::string& source) {
  const KeySpec* spec = find_key(path);
  values_[path] = convert(*spec, node, source);
}

const Value& Config::at(const std::string& path) const {
  auto it = values_.find(path);
  if (it == values_.end()) throw ConfigError("config: no key '" + path + "' in the schema");
  return it->second;
}

#define COATNET_CONFIG_GETTER(name, type)                                             \
  const type& Config::name(const std::string& path) const {                           \
    const Value& v = at(path);                                                        \
    if (auto p = std::get_if<type>(&v)) return *p;                                    \
    throw ConfigError("config: key '" + path + "' is " + kind_name(*find_key(path)) + \
                      ", read with the wrong getter " #name);                         \
  }
COATNET_CONFIG_GETTER(get_string, std::string)
COATNET_CONFIG_GETTER(get_ints, std::vector<int64_t>)
COATNET_CONFIG_GETTER(get_floats, std::vector<double>)
COATNET_CONFIG_GETTER(get_strings, std::vector<std::string>)
COATNET_CONFIG_GETTER(get_int_ref, int64_t)
COATNET_CONFIG_GETTER(get_float_ref, double)
COATNET_CONFIG_GETTER(get_bool_ref, bool)
#undef COATNET_CONFIG_GETTER

bool Config::get_bool(const std::string& path) const {
  return get_bool_ref(path);
}
int64_t Config::get_int(const std::string& path) const {
  return get_int_ref(path);
}
double Config::get_float(const std::string& path) const {
  return get_float_ref(path);
}

std::string Config::dump() const {
  std::string out;
  std::string section;
  for (const auto& spec : schema()) {
    std::string sec = spec.path.substr(0, spec.path.find('.'));
    std::string leaf = spec.path.substr(spec.path.find('.') + 1);
    if (sec != section) {
      out += sec + ":\n";
      section = sec;
    }
    std::string line = "  " + leaf + ": " + format_value(at(spec.path));
    if (line.size() < 40) line.append(40 - line.size(), ' ');
    out += line + "  # " + spec.doc + "\n";
  }
  return out;
}

std::map<std::string, std::string> Config::recipe() const {
  std::map<std::string, std::string> out;
  for (const auto& spec : schema())
    if (spec.recipe) out[spec.path] = format_value(at(spec.path));
  return out;
}

}  // namespace coatnet::config
