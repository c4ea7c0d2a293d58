#include "cli/args.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <utility>

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

// CLI11 splits the command line (--name value, --name=value, flags, positionals in any order,
// -h/--help); the messages stay this parser's own, so every command reads as it always has.
void ArgParser::parse(int argc, char** argv) {
  CLI::App app(summary_, command_);
  app.set_help_flag("-h,--help");
  app.allow_extras(true);  // unknown arguments are reported below, with a suggestion
  std::vector<std::pair<std::string, CLI::Option*>> given;
  for (const Positional& p : positionals_) {
    CLI::Option* o = app.add_option(p.name);
    if (p.variadic)  // one or more, also between options
      o->expected(1, CLI::detail::expected_max_vector_size)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
          ->allow_extra_args(true);
    given.emplace_back(p.name, o);
  }
  for (const Spec& s : specs_) {
    CLI::Option* o = s.is_flag ? app.add_flag("--" + s.name)
                               // Zero or one value, so that a missing one is ours to report.
                               : app.add_option("--" + s.name)
                                     ->expected(0, 1)
                                     ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                                     ->allow_extra_args(false);
    given.emplace_back(s.name, o);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{};
  } catch (const CLI::ParseError& e) {
    throw UsageError("coatnet " + command_ + ": " + e.what());
  }
  const std::string me = "coatnet " + command_ + ": ";
  if (const std::vector<std::string> extra = app.remaining(); !extra.empty()) {
    const std::string& arg = extra.front();
    if (arg.size() < 2 || arg[0] != '-') throw UsageError(me + "unexpected argument '" + arg + "'");
    std::vector<std::string> names{"--help"};
    for (const auto& s : specs_) names.push_back("--" + s.name);
    const std::string name = arg.substr(0, arg.find('='));
    throw UsageError(me + "unknown option '" + name + "'" + text::did_you_mean(name, names));
  }
  for (int i = 1; i < argc; ++i)  // CLI11 takes --flag=false; these flags take no value
    for (const Spec& s : specs_)
      if (s.is_flag && std::string(argv[i]).rfind("--" + s.name + "=", 0) == 0)
        throw UsageError(me + "--" + s.name + " takes no value");
  for (const auto& [name, option] : given) {
    const Spec* spec = find(name);
    std::vector<std::string> values = option->results();
    if (spec && spec->is_flag) values.assign(option->count(), "1");
    if (spec && !spec->is_flag) {
      for (const std::string& v : values)
        if (v.empty()) throw UsageError(me + "--" + name + " needs " + spec->metavar);
      if (values.size() > 1 && !spec->is_repeated)
        throw UsageError(me + "--" + name + " given twice");
    }
    if (!values.empty()) values_[name] = std::move(values);
  }
  for (const auto& p : positionals_)
    if (!values_.count(p.name)) throw UsageError(me + "missing " + p.name);
  for (const auto& s : specs_)
    if (s.is_required && !values_.count(s.name))
      throw UsageError(me + "--" + s.name + " " + s.metavar + " is required");
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
