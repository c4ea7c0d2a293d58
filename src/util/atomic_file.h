// Files written so that a crash, a full disk or a killed process leaves either the old file or
// the whole new one at PATH, never a part: the content goes to PATH.tmp, which is fsynced and
// renamed over PATH, and then PATH's directory is fsynced, so that the rename itself is on disk.
// Every writer of a file that is read back later (dataset shards, checkpoint manifests, the
// `latest` pointer, safetensors weights) goes through here.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

namespace coatnet::util {

struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// fsync of a file or a directory; throws IoError naming the path and the system's reason.
void fsync_path(const std::string& path);

// fill(tmp) writes the temporary file by any means (HDF5, write(2), a stream) and closes it;
// then it is fsynced, renamed over `path`, and the directory fsynced. When fill or any of that
// throws, the temporary file is removed and `path` is as it was.
void write_atomically(const std::string& path,
                      const std::function<void(const std::string& tmp)>& fill);

void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace coatnet::util
