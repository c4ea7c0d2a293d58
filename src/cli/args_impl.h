// Template part of args.h.
#pragma once

#include <cstdio>
#include <exception>

namespace coatnet::cli {

void print_error(const std::string& command, const std::string& message);

template <typename Body>
int run_command(ArgParser& parser, int argc, char** argv, Body body) {
  try {
    parser.parse(argc, argv);
    return body();
  } catch (const HelpRequested&) {
    std::fputs(parser.usage().c_str(), stdout);
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s\n\n%s", e.what(), parser.usage().c_str());
    return 2;
  } catch (const std::exception& e) {
    print_error(argv[0], e.what());
    return 1;
  }
}

}  // namespace coatnet::cli
