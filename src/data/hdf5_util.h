// RAII for HDF5 ids and a check that turns a failed call into an error naming the file.
// HDF5 is only touched when a shard is opened or written, never on the record-reading path.
#pragma once

#include <hdf5.h>

#include "util/check.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace coatnet::data::h5 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Id {
 public:
  Id() = default;
  Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Silences HDF5's own error stack printing for the scope; we report errors ourselves.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// For errors: the name of the file an HDF5 object belongs to, and the innermost message on
// HDF5's error stack (e.g. "No space left on device" under "unable to write to file").
std::string file_of(hid_t obj);
std::string last_error();

// What COATNET_H5_CHECK and COATNET_H5_ID (below) call.
[[noreturn]] void failed(const char* call, const char* src, int line, const std::string& file,
                         const std::string& what);
inline hid_t checked_id(hid_t id, const char* call, const char* src, int line,
                        const std::string& file, const std::string& what) {
  if (id < 0) failed(call, src, line, file, what);
  return id;
}

Id open_file(const std::string& path);
Id create_file(const std::string& path);
Id open_dataset(hid_t file, const std::string& name, const std::string& path);
bool exists(hid_t file, const std::string& name);

// Whole 1-D/2-D datasets of a fixed type; `path` names the file in errors.
template <typename T>
std::vector<T> read_all(hid_t file, const std::string& name, const std::string& path,
                        std::vector<hsize_t>* dims = nullptr);
template <typename T>
void write_all(hid_t group, const std::string& name, const std::vector<T>& data,
               const std::vector<hsize_t>& dims);

int64_t read_int_attr(hid_t obj, const std::string& name, const std::string& path);
std::string read_string_attr(hid_t obj, const std::string& name, const std::string& path);
std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name,
                                           const std::string& path);
void write_int_attr(hid_t obj, const std::string& name, int64_t v);
void write_string_attr(hid_t obj, const std::string& name, const std::string& v);
void write_strings_attr(hid_t obj, const std::string& name, const std::vector<std::string>& v);
bool has_attr(hid_t obj, const std::string& name);

}  // namespace coatnet::data::h5

// COATNET_H5_CHECK(call, file, what): an HDF5 call that returns a negative value throws
// h5::Error naming the call, its file:line, the data file, what it was doing, HDF5's own
// message, and this process's rank and host (as COATNET_MPI_CHECK does for MPI).
// COATNET_H5_ID(call, file, what): the same for a call that returns an id, which it returns.
#define COATNET_H5_CHECK(call, file, what)                                                  \
  do {                                                                                      \
    if ((call) < 0) ::coatnet::data::h5::failed(#call, __FILE__, __LINE__, (file), (what)); \
  } while (0)
#define COATNET_H5_ID(call, file, what) \
  ::coatnet::data::h5::checked_id((call), #call, __FILE__, __LINE__, (file), (what))
