#include "util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace coatnet::util {

namespace fs = std::filesystem;

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path + ": cannot open to fsync (" + std::strerror(errno) + ")");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError(path + ": fsync failed (" + std::strerror(err) + ")");
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string& tmp)>& fill) {
  const std::string tmp = path + ".tmp";
  try {
    fill(tmp);
    fsync_path(tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw IoError(path + ": rename from " + tmp + " failed (" + std::strerror(errno) + ")");
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  const fs::path dir = fs::path(path).parent_path();
  fsync_path(dir.empty() ? "." : dir.string());
}

void write_text_atomically(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << text;
    out.flush();
    if (!out) throw IoError(tmp + ": write failed (disk full?)");
  });
}

}  // namespace coatnet::util
