# Finds every dependency and prints one line per component: found/built or not, and why.
include(FindPkgConfig)

function(coatnet_report name state detail)
  string(LENGTH "${name}" _len)
  math(EXPR _pad "16 - ${_len}")
  string(REPEAT " " ${_pad} _spaces)
  message(STATUS "coatnet: ${name}${_spaces} ${state} ${detail}")
endfunction()

# --- LibTorch: Torch_DIR, CMAKE_PREFIX_PATH, or the wheel in .venv (launch/setup.sh) ---------
if(NOT Torch_DIR AND EXISTS ${CMAKE_SOURCE_DIR}/.venv/bin/python)
  execute_process(
    COMMAND ${CMAKE_SOURCE_DIR}/.venv/bin/python -c
            "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_torch_prefix)
    list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
  endif()
endif()
# The CUDA build of LibTorch insists on a CUDA toolkit; a toolkit in the default place is used.
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
# LibTorch's config turns TORCH_CUDA_ARCH_LIST into the -gencode flags of every CUDA source
# (its default reaches back to GPUs that nvcc 13 no longer knows): A100 and H100/H200 unless
# the variable or the environment says otherwise.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
elseif(NOT DEFINED TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "$ENV{TORCH_CUDA_ARCH_LIST}")
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  message(FATAL_ERROR
    "coatnet: LibTorch not found. Run launch/setup.sh (installs the pinned torch wheel into .venv), "
    "or point the build at an existing LibTorch 2.x: cmake -DTorch_DIR=/path/to/libtorch/share/cmake/Torch")
endif()
# The wheel's libtorch_cuda finds its CUDA libraries (NCCL, cuDNN, ...) in the wheel's nvidia/
# folders through its RPATH at run time. The linker, though, searches -rpath folders first and
# would check it against an older NCCL in the toolkit, so point it at the wheel's copies first.
get_filename_component(_torch_root "${Torch_DIR}/../../.." ABSOLUTE)
file(GLOB _wheel_cuda_libs "${_torch_root}/../nvidia/*/lib")
foreach(_dir ${_wheel_cuda_libs})
  add_link_options("LINKER:-rpath-link,${_dir}")
endforeach()
# TorchConfig adds its flags (ABI define, -D_GLIBCXX_USE_CXX11_ABI) through TORCH_CXX_FLAGS.
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")
set(COATNET_TORCH_CUDA OFF)
if(TARGET torch_cuda OR CAFFE2_USE_CUDA OR TORCH_CUDA_LIBRARIES)
  set(COATNET_TORCH_CUDA ON)
endif()
coatnet_report("LibTorch" "found" "${Torch_VERSION} (${Torch_DIR}), CUDA build: ${COATNET_TORCH_CUDA}")

# --- GPU components: one line each -----------------------------------------------------------
# comm-nccl is plain C++: it needs a CUDA LibTorch, the CUDA runtime's headers and NCCL, all of
# which the toolkit or the torch wheel's nvidia/ packages provide. nvcc is needed only for the
# kernels in src/cuda. (A CUDA LibTorch's own CMake config already asks for a toolkit with nvcc:
# Caffe2/public/cuda.cmake calls find_package(CUDA).)
set(COATNET_WITH_CUDA OFF)
set(COATNET_WITH_NCCL OFF)
if(COATNET_TORCH_CUDA)
  file(GLOB _wheel_cuda_includes "${_torch_root}/../nvidia/*/include")
  find_path(COATNET_CUDART_INCLUDE_DIR cuda_runtime_api.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDA_INCLUDE_DIRS} /usr/local/cuda/include
                  ${_wheel_cuda_includes})
  # NCCL: the copy LibTorch itself runs with (the wheel's), else the toolkit's: libtorch_cuda
  # needs the wheel's newer symbols, and one process must not load two NCCLs.
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS "${_torch_root}/../nvidia/nccl/include"
            ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES libnccl.so.2 nccl NAMES_PER_DIR
               HINTS "${_torch_root}/../nvidia/nccl/lib" ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND COATNET_CUDART_INCLUDE_DIR)
    set(COATNET_WITH_NCCL ON)
    coatnet_report("NCCL" "found" "${NCCL_LIBRARY}: comm-nccl builds")
  else()
    coatnet_report("NCCL" "off" "(nccl.h: ${NCCL_INCLUDE_DIR}, libnccl: ${NCCL_LIBRARY}, cuda_runtime_api.h: ${COATNET_CUDART_INCLUDE_DIR}): no comm-nccl")
  endif()
  include(CheckLanguage)
  if(NOT COATNET_FUZZ)  # the fuzzing build (clang) has no use for the kernels
    check_language(CUDA)
  endif()
  if(CMAKE_CUDA_COMPILER AND NOT COATNET_FUZZ)
    enable_language(CUDA)
    set(COATNET_WITH_CUDA ON)
    coatnet_report("CUDA kernels" "found" "nvcc ${CMAKE_CUDA_COMPILER_VERSION}: src/cuda builds for TORCH_CUDA_ARCH_LIST ${TORCH_CUDA_ARCH_LIST}")
  else()
    coatnet_report("CUDA kernels" "off" "(no nvcc found; set CMAKE_CUDA_COMPILER): ATen ops only, train.cuda_kernels unavailable")
  endif()
else()
  coatnet_report("NCCL" "off" "(LibTorch is a CPU build)")
  coatnet_report("CUDA kernels" "off" "(LibTorch is a CPU build)")
endif()

# --- MPI ---------------------------------------------------------------------------------------
find_package(MPI COMPONENTS C)
if(MPI_C_FOUND)
  coatnet_report("MPI" "found" "MPI ${MPI_C_VERSION}, ${MPIEXEC_EXECUTABLE}")
else()
  message(FATAL_ERROR "coatnet: MPI not found: apt-get install libopenmpi-dev openmpi-bin, "
                      "or set MPI_HOME to your MPI installation")
endif()
find_program(MPIEXEC_EXECUTABLE NAMES mpirun mpiexec)

# --- HDF5 (C API, serial) ---------------------------------------------------------------------
find_package(HDF5 COMPONENTS C)
if(HDF5_FOUND)
  coatnet_report("HDF5" "found" "${HDF5_VERSION}")
else()
  message(FATAL_ERROR "coatnet: HDF5 not found: apt-get install libhdf5-dev, or set HDF5_ROOT")
endif()

# --- yaml-cpp ---------------------------------------------------------------------------------
find_package(yaml-cpp REQUIRED)
coatnet_report("yaml-cpp" "found" "${yaml-cpp_VERSION}")

# --- nlohmann-json: every JSON read and write (records, reports, safetensors headers) -----------
find_package(nlohmann_json 3.2 REQUIRED)
coatnet_report("nlohmann-json" "found" "${nlohmann_json_VERSION}")

# --- CLI11: the command line of every subcommand (header-only) --------------------------------
find_package(CLI11 2.1 REQUIRED)
coatnet_report("CLI11" "found" "${CLI11_VERSION}")

# --- Boost (DLL for plugins, Stacktrace for fatal errors) -------------------------------------
find_package(Boost 1.71 REQUIRED COMPONENTS filesystem)
coatnet_report("Boost" "found" "${Boost_VERSION}")

# --- TurboJPEG, xxHash (pkg-config) ----------------------------------------------------------
pkg_check_modules(TURBOJPEG REQUIRED IMPORTED_TARGET libturbojpeg)
coatnet_report("TurboJPEG" "found" "${TURBOJPEG_VERSION}")
# libjpeg(-turbo)'s own API: crop-region decoding (jpeg_crop_scanline, jpeg_skip_scanlines).
pkg_check_modules(JPEG REQUIRED IMPORTED_TARGET libjpeg)
coatnet_report("libjpeg" "found" "${JPEG_VERSION}")
pkg_check_modules(PNG REQUIRED IMPORTED_TARGET libpng)
coatnet_report("libpng" "found" "${PNG_VERSION}: PNG sources are converted when packing")
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
coatnet_report("xxHash" "found" "${XXHASH_VERSION}")

# --- zlib (gzipped IDX files) ------------------------------------------------------------------
find_package(ZLIB REQUIRED)
coatnet_report("zlib" "found" "${ZLIB_VERSION_STRING}")

# --- GoogleTest -------------------------------------------------------------------------------
find_package(GTest REQUIRED)
coatnet_report("GTest" "found" "${GTest_VERSION}")

# --- Python with torch + timm, for the parity tests against the reference implementation -----
set(COATNET_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH "python with torch+timm")
if(EXISTS ${COATNET_PYTHON})
  execute_process(COMMAND ${COATNET_PYTHON} -c "import timm, safetensors; print(timm.__version__)"
                  OUTPUT_VARIABLE _timm_version OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _timm_rc ERROR_QUIET)
endif()
if(_timm_rc EQUAL 0)
  set(COATNET_HAVE_TIMM ON)
  coatnet_report("timm" "found" "${_timm_version}: parity tests enabled")
else()
  set(COATNET_HAVE_TIMM OFF)
  coatnet_report("timm" "not found" "(parity tests will report a skip; launch/setup.sh installs it)")
endif()
