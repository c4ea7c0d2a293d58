// Command-line parsing for the `coatnet` subcommands: declared options, `--help`, and a
// UsageError (exit 2, usage on stderr) for anything unknown or malformed. CLI11 splits the
// command line; the usage text and the messages are this file's, the same for every command
// (tests/cli/test_args.cpp holds them).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace coatnet::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown by parse() when --help was given; the command prints usage() to stdout and exits 0.
struct HelpRequested {};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);
  ArgParser& option(const std::string& name, const std::string& metavar, const std::string& help,
                    const std::string& default_value = "");
  ArgParser& required(const std::string& name, const std::string& metavar, const std::string& help);
  ArgParser& repeated(const std::string& name, const std::string& metavar, const std::string& help);
  ArgParser& flag(const std::string& name, const std::string& help);
  ArgParser& epilog(const std::string& text);
  // Positional arguments, in order; a variadic one (one or more values) must come last.
  ArgParser& positional(const std::string& name, const std::string& help, bool variadic = false);

  void parse(int argc, char** argv);  // argv[0] is the subcommand name

  std::string usage() const;
  bool has(const std::string& name) const;
  const std::string& get(const std::string& name) const;
  int get_int(const std::string& name) const;
  const std::vector<std::string>& all(const std::string& name) const;

 private:
  struct Spec {
    std::string name, metavar, help, default_value;
    bool is_flag = false, is_required = false, is_repeated = false;
  };
  struct Positional {
    std::string name, help;
    bool variadic;
  };
  std::vector<Positional> positionals_;
  const Spec* find(const std::string& name) const;

  std::string command_, summary_, epilog_;
  std::vector<Spec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
};

// Two-level commands (`coatnet pack idx ...`, `coatnet data verify ...`): argv[1] names the
// subcommand; none or --help prints `usage` (exit 2 or 0), an unknown one suggests the closest.
struct Subcommand {
  const char* name;
  std::function<int(int, char**)> run;
};
int dispatch(const std::string& group, const char* what, const char* usage, int argc, char** argv,
             const std::vector<Subcommand>& subcommands);

// Runs a subcommand body: HelpRequested -> usage on stdout, exit 0; UsageError -> message and
// usage on stderr, exit 2; any other exception -> "coatnet CMD: error: ..." on stderr, exit 1.
template <typename Body>
int run_command(ArgParser& parser, int argc, char** argv, Body body);

}  // namespace coatnet::cli

#include "cli/args_impl.h"
