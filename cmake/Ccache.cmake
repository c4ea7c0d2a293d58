# ccache makes the second build of an unchanged tree take seconds. Precompiled headers need the
# sloppiness below, otherwise ccache refuses to cache any file that uses the PCH. BASEDIR makes
# paths inside the tree relative, so a fresh clone elsewhere (as CI makes) hits the same cache.
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(_launcher ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}"
      ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_launcher})
  set(CMAKE_C_COMPILER_LAUNCHER ${_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_launcher})
  message(STATUS "coatnet: ccache          found (${CCACHE_PROGRAM})")
else()
  message(STATUS "coatnet: ccache          not found: rebuilds are slower (apt-get install ccache)")
endif()
