#include "cli/args.h"

#include <cstdio>

#include "util/text.h"

namespace coatnet::cli {

void print_error(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "coatnet %s: error: %s\n", command.c_str(), message.c_str());
}

int dispatch(const std::string& group, const char* what, const char* usage, int argc, char** argv,
             const std::vector<Subcommand>& subcommands) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  std::vector<std::string> names;
  for (const auto& s : subcommands) {
    if (name == s.name) return s.run(argc - 1, argv + 1);
    names.push_back(s.name);
  }
  std::fprintf(stderr, "coatnet %s: unknown %s '%s'%s\n\n%s", group.c_str(), what, name.c_str(),
               text::did_you_mean(name, names).c_str(), usage);
  return 2;
}

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& metavar,
                             const std::string& help, const std::string& default_value) {
  specs_.push_back({name, metavar, help, default_value});
  return *this;
}
ArgParser& ArgParser::required(const std::string& name, const std::string& metavar,
                               const std::string& help) {
  specs_.push_back({name, metavar, help, "", false, true});
  return *this;
}
ArgParser& ArgParser::repeated(const std::string& name, const std::string& metavar,
                               const std::string& help) {
  specs_.push_back({name, metavar, help, "", false, false, true});
  return *this;
}
ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  specs_.push_back({name, "", help, "", true});
  return *this;
}
ArgParser& ArgParser::positional(const std::string& name, const std::string& help, bool variadic) {
  positionals_.push_back({name, help, variadic});
  return *this;
}

ArgParser& ArgParser::epilog(const std::string& text) {
  epilog_ = text;
  return *this;
}

const ArgParser::Spec* ArgParser::find(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

void ArgParser::parse(int argc, char** argv) {
  std::vector<std::string> names{"--help"};
  for (const auto& s : specs_) names.push_back("--" + s.name);
  size_t next_positional = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") throw HelpRequested{};
    if (arg.rfind("--", 0) != 0) {
      if (next_positional >= positionals_.size())
        throw UsageError("coatnet " + command_ + ": unexpected argument '" + arg + "'");
      const Positional& p = positionals_[next_positional];
      values_[p.name].push_back(arg);
      if (!p.variadic) ++next_positional;
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const Spec* spec = find(name);
    if (!spec)
      throw UsageError("coatnet " + command_ + ": unknown option '--" + name + "'" +
                       text::did_you_mean("--" + name, names));
    if (spec->is_flag) {
      if (inline_value) throw UsageError("coatnet " + command_ + ": --" + name + " takes no value");
      values_[name].push_back("1");
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc)
        throw UsageError("coatnet " + command_ + ": --" + name + " needs " + spec->metavar);
      value = argv[++i];
    }
    if (!spec->is_repeated && values_.count(name))
      throw UsageError("coatnet " + command_ + ": --" + name + " given twice");
    values_[name].push_back(value);
  }
  for (const auto& p : positionals_)
    if (!values_.count(p.name)) throw UsageError("coatnet " + command_ + ": missing " + p.name);
  for (const auto& s : specs_)
    if (s.is_required && !values_.count(s.name))
      throw UsageError("coatnet " + command_ + ": --" + s.name + " " + s.metavar + " is required");
}

std::string ArgParser::usage() const {
  std::string out = "usage: coatnet " + command_;
  for (const auto& p : positionals_) out += " " + p.name + (p.variadic ? "..." : "");
  for (const auto& s : specs_) {
    std::string o = "--" + s.name + (s.metavar.empty() ? "" : " " + s.metavar);
    out += s.is_required ? " " + o : " [" + o + (s.is_repeated ? " ..." : "") + "]";
  }
  out += "\n\n" + summary_ + "\n\n";
  if (!positionals_.empty()) out += "arguments:\n";
  for (const auto& p : positionals_) {
    std::string o = "  " + p.name;
    o.append(o.size() < 28 ? 28 - o.size() : 1, ' ');
    out += o + p.help + "\n";
  }
  out += "options:\n";
  for (const auto& s : specs_) {
    std::string o = "  --" + s.name + (s.metavar.empty() ? "" : " " + s.metavar);
    if (o.size() < 28)
      o.append(28 - o.size(), ' ');
    else
      o += "\n" + std::string(28, ' ');
    out += o + s.help;
    if (!s.default_value.empty()) out += " (default: " + s.default_value + ")";
    out += "\n";
  }
  out += "  --help                    show this help\n";
  if (!epilog_.empty()) out += "\n" + epilog_ + "\n";
  return out;
}

bool ArgParser::has(const std::string& name) const {
  return values_.count(name) > 0;
}

const std::string& ArgParser::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second.back();
  return find(name)->default_value;
}

int ArgParser::get_int(const std::string& name) const {
  const std::string& v = get(name);
  try {
    size_t used = 0;
    int x = std::stoi(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw UsageError("coatnet " + command_ + ": --" + name + " expects an integer, got '" + v + "'");
}

const std::vector<std::string>& ArgParser::all(const std::string& name) const {
  static const std::vector<std::string> none;
  auto it = values_.find(name);
  return it == values_.end() ? none : it->second;
}

}  // namespace coatnet::cli
