// Checked calls to MPI, CUDA and NCCL (HDF5: COATNET_H5_CHECK in data/hdf5_util.h, which
// throws the data layer's own error type with the same message). A failing call throws an error
// that names the library, the call as written, its file:line, the library's own message, what it
// was doing, and this process's rank and host: in a job of hundreds of ranks, a failure says where
// it happened. Header-only, so the comm plugins use it without linking the core.
//
//   COATNET_MPI_CHECK(MPI_Ibarrier(comm, &req), "barrier before the commit");
//   COATNET_CUDA_CHECK(cudaEventRecord(e, stream), "bucket 3");
//   COATNET_NCCL_CHECK(ncclAllReduce(...), "gradient all-reduce");
//
// MPI reports errors to these checks only because World::init sets MPI_ERRORS_RETURN on
// MPI_COMM_WORLD; otherwise MPI aborts by itself with a message that names none of this.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace coatnet::util {

// "rank 3 on node07", from the launcher's environment (mpirun, srun), so that it works before
// MPI is up and in code that does not link MPI.
inline std::string where_am_i() {
  const char* r = nullptr;
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "PMI_RANK"})
    if (!r) r = std::getenv(v);
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  return std::string("rank ") + (r ? r : "0") + " on " + host;
}

// The source path from src/ or backends/ on: short, and the same on every machine.
inline const char* source_path(const char* file) {
  for (const char* root : {"/src/", "/backends/", "/tests/"})
    if (const char* p = std::strstr(file, root)) return p + 1;
  return file;
}

// "LIB error at src/x.cpp:12 (rank 3 on node07), WHAT: CALL: MESSAGE"
inline std::string check_message(const char* lib, const char* call, const char* file, int line,
                                 const std::string& message, const std::string& what) {
  return std::string(lib) + " error at " + source_path(file) + ":" + std::to_string(line) + " (" +
         where_am_i() + ")" + (what.empty() ? "" : ", " + what) + ": " + call + ": " + message;
}

[[noreturn]] inline void check_failed(const char* lib, const char* call, const char* file, int line,
                                      const std::string& message, const std::string& what) {
  throw std::runtime_error(check_message(lib, call, file, line, message, what));
}

// "STATUS (DETAIL)", or STATUS alone when there is no detail.
inline std::string with_detail(const char* status, const char* detail) {
  return std::string(status) + (detail && *detail ? std::string(" (") + detail + ")" : "");
}

}  // namespace coatnet::util

#define COATNET_MPI_CHECK(call, what)                                                 \
  do {                                                                                \
    const int coatnet_rc_ = (call);                                                   \
    if (coatnet_rc_ != MPI_SUCCESS) {                                                 \
      char coatnet_msg_[MPI_MAX_ERROR_STRING];                                        \
      int coatnet_len_ = 0;                                                           \
      MPI_Error_string(coatnet_rc_, coatnet_msg_, &coatnet_len_);                     \
      ::coatnet::util::check_failed("MPI", #call, __FILE__, __LINE__,                 \
                                    std::string(coatnet_msg_, coatnet_len_), (what)); \
    }                                                                                 \
  } while (0)

// A library whose calls return a status, with a function that names it (CUDA, NCCL).
#define COATNET_STATUS_CHECK_(lib, call_text, call, ok, message_of, what)                        \
  do {                                                                                           \
    const auto coatnet_rc_ = (call);                                                             \
    if (coatnet_rc_ != (ok))                                                                     \
      ::coatnet::util::check_failed(lib, call_text, __FILE__, __LINE__, message_of(coatnet_rc_), \
                                    (what));                                                     \
  } while (0)

#define COATNET_CUDA_CHECK(call, what) \
  COATNET_STATUS_CHECK_("CUDA", #call, call, cudaSuccess, cudaGetErrorString, what)
// NCCL's name for the status, then its last error's text where it kept one: for an "invalid
// usage" that is what was invalid ("Duplicate GPU detected : rank 1 and rank 0 both on CUDA
// device 17000"), which NCCL otherwise prints only under NCCL_DEBUG=WARN.
#define COATNET_NCCL_CHECK(call, what) \
  COATNET_STATUS_CHECK_("NCCL", #call, call, ncclSuccess, COATNET_NCCL_MESSAGE_, what)
#define COATNET_NCCL_MESSAGE_(rc) \
  ::coatnet::util::with_detail(ncclGetErrorString(rc), ncclGetLastError(nullptr))
