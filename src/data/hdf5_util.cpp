#include "data/hdf5_util.h"

#include <cstdint>

namespace coatnet::data::h5 {

namespace {

template <typename T>
hid_t native_type();
template <>
hid_t native_type<uint8_t>() {
  return H5T_NATIVE_UINT8;
}
template <>
hid_t native_type<int32_t>() {
  return H5T_NATIVE_INT32;
}
template <>
hid_t native_type<uint32_t>() {
  return H5T_NATIVE_UINT32;
}
template <>
hid_t native_type<uint64_t>() {
  return H5T_NATIVE_UINT64;
}
template <>
hid_t native_type<float>() {
  return H5T_NATIVE_FLOAT;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what +
              " (is it a coatnet dataset shard? `coatnet data inspect FILE` shows what it holds)");
}

// Creation properties without timestamps: the same records give byte-identical shards, so
// packs with different rank counts can be compared with cmp.
Id no_times_dcpl() {
  Id p(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(p, false);
  return p;
}

}  // namespace

std::string file_of(hid_t obj) {
  const ssize_t n = H5Fget_name(obj, nullptr, 0);
  if (n <= 0) return "(HDF5 object " + std::to_string(obj) + ")";
  std::string name(static_cast<size_t>(n), '\0');
  H5Fget_name(obj, name.data(), name.size() + 1);
  return name;
}

std::string last_error() {
  // The innermost entry of the stack (the first walked upward) says what went wrong at the
  // bottom, e.g. a system call's error; the outer ones only say which API call it was in.
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        auto* m = static_cast<std::string*>(out);
        if (m->empty() && e->desc) *m = e->desc;
        return 0;
      },
      &msg);
  return msg.empty() ? "no message on HDF5's error stack" : msg;
}

void failed(const char* call, const char* src, int line, const std::string& file,
            const std::string& what) {
  throw Error(util::check_message("HDF5", call, src, line, last_error(), file + ": " + what));
}

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}
QuietErrors::~QuietErrors() {
  H5Eset_auto2(H5E_DEFAULT, func_, data_);
}

Id open_file(const std::string& path) {
  QuietErrors quiet;
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw Error(path + ": cannot open as HDF5 (missing, unreadable, truncated or another format)");
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw Error(path + ": H5Fopen failed");
  return Id(f, H5Fclose);
}

Id create_file(const std::string& path) {
  QuietErrors quiet;
  Id fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  if (f < 0) throw Error(path + ": cannot create HDF5 file (directory missing or not writable?)");
  return Id(f, H5Fclose);
}

bool exists(hid_t file, const std::string& name) {
  QuietErrors quiet;
  // Check each path component: H5Lexists on "a/b" fails when "a" is missing.
  std::string prefix;
  size_t start = 1;
  while (true) {
    size_t slash = name.find('/', start);
    prefix = name.substr(0, slash);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Id open_dataset(hid_t file, const std::string& name, const std::string& path) {
  if (!exists(file, name)) fail(path, "no dataset " + name);
  QuietErrors quiet;
  hid_t d = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (d < 0) fail(path, "cannot open dataset " + name);
  return Id(d, H5Dclose);
}

template <typename T>
std::vector<T> read_all(hid_t file, const std::string& name, const std::string& path,
                        std::vector<hsize_t>* dims_out) {
  Id d = open_dataset(file, name, path);
  Id space(H5Dget_space(d), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 1 || rank > 2) fail(path, name + " has rank " + std::to_string(rank));
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  hsize_t n = 1;
  for (hsize_t x : dims) n *= x;
  // The shards' datasets are contiguous and uncompressed: their elements fit in the bytes stored.
  // A damaged header that claims more is refused before anything is allocated (fuzz_shard).
  const hsize_t stored = H5Dget_storage_size(d);
  if (n > stored / sizeof(T))
    fail(path, name + " claims " + std::to_string(n) + " elements but stores " +
                   std::to_string(stored) + " bytes (truncated or corrupt file?)");
  std::vector<T> out(n);
  QuietErrors quiet;
  if (n > 0 && H5Dread(d, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(path, "cannot read " + name + " (truncated or corrupt file?)");
  if (dims_out) *dims_out = dims;
  return out;
}

template <typename T>
void write_all(hid_t group, const std::string& name, const std::vector<T>& data,
               const std::vector<hsize_t>& dims) {
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Id dcpl = no_times_dcpl();
  QuietErrors quiet;
  Id d(COATNET_H5_ID(
           H5Dcreate2(group, name.c_str(), native_type<T>(), space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
           file_of(group), "creating dataset " + name),
       H5Dclose);
  if (!data.empty())
    COATNET_H5_CHECK(H5Dwrite(d, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()),
                     file_of(group), "writing dataset " + name + " (disk full?)");
}

#define COATNET_H5_INSTANTIATE(T)                                                    \
  template std::vector<T> read_all<T>(hid_t, const std::string&, const std::string&, \
                                      std::vector<hsize_t>*);                        \
  template void write_all<T>(hid_t, const std::string&, const std::vector<T>&,       \
                             const std::vector<hsize_t>&);
COATNET_H5_INSTANTIATE(uint8_t)
COATNET_H5_INSTANTIATE(int32_t)
COATNET_H5_INSTANTIATE(uint32_t)
COATNET_H5_INSTANTIATE(uint64_t)
COATNET_H5_INSTANTIATE(float)
#undef COATNET_H5_INSTANTIATE

bool has_attr(hid_t obj, const std::string& name) {
  QuietErrors quiet;
  return H5Aexists(obj, name.c_str()) > 0;
}

int64_t read_int_attr(hid_t obj, const std::string& name, const std::string& path) {
  if (!has_attr(obj, name)) fail(path, "no attribute " + name);
  Id a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  int64_t v = 0;
  if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) fail(path, "cannot read attribute " + name);
  return v;
}

void write_int_attr(hid_t obj, const std::string& name, int64_t v) {
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  QuietErrors quiet;
  Id a(COATNET_H5_ID(
           H5Acreate2(obj, name.c_str(), H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT),
           file_of(obj), "creating attribute " + name),
       H5Aclose);
  COATNET_H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, &v), file_of(obj), "writing attribute " + name);
}

std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name,
                                           const std::string& path) {
  if (!has_attr(obj, name)) fail(path, "no attribute " + name);
  Id a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  Id space(H5Aget_space(a), H5Sclose);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  std::vector<char*> raw(static_cast<size_t>(n), nullptr);
  if (n > 0 && H5Aread(a, type, raw.data()) < 0) fail(path, "cannot read attribute " + name);
  std::vector<std::string> out;
  for (char* s : raw) out.emplace_back(s ? s : "");
  if (n > 0) H5Dvlen_reclaim(type, space, H5P_DEFAULT, raw.data());
  return out;
}

std::string read_string_attr(hid_t obj, const std::string& name, const std::string& path) {
  auto v = read_strings_attr(obj, name, path);
  if (v.size() != 1) fail(path, "attribute " + name + " is not one string");
  return v.front();
}

void write_strings_attr(hid_t obj, const std::string& name, const std::vector<std::string>& v) {
  hsize_t n = v.size();
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  std::vector<const char*> raw;
  for (const auto& s : v) raw.push_back(s.c_str());
  QuietErrors quiet;
  Id a(COATNET_H5_ID(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                     file_of(obj), "creating attribute " + name),
       H5Aclose);
  if (n > 0)
    COATNET_H5_CHECK(H5Awrite(a, type, raw.data()), file_of(obj), "writing attribute " + name);
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& v) {
  write_strings_attr(obj, name, {v});
}

}  // namespace coatnet::data::h5
