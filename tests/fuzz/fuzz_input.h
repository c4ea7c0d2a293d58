// Shared by the libFuzzer harnesses of tests/fuzz: the input as a file, for parsers that read
// paths, and the rule they all check — bad bytes end in an exception that names the problem,
// never in a crash, a hang or an error the sanitizers see.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace coatnet::fuzz {

// The input written to a private temporary file, removed when this goes out of scope.
class InputFile {
 public:
  InputFile(const uint8_t* data, size_t size) {
    char name[] = "/tmp/coatnet-fuzz-XXXXXX";
    const int fd = ::mkstemp(name);
    if (fd < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    path_ = name;
  }
  ~InputFile() { std::remove(path_.c_str()); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace coatnet::fuzz
