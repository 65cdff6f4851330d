# CMake toolchain file: 64-bit ARM Linux (edgec target `aarch64` / `aarch64-dotprod`) with
# Debian's cross compiler. Builds the edgec runtime (or your application with it) for the board:
#
#   cmake -S . -B build-a64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   cmake --build build-a64
#
# Debian/Ubuntu: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross (qemu-user to run
# the results here: CMAKE_CROSSCOMPILING_EMULATOR is set when qemu-aarch64 is installed, so
# ctest runs the C tests under it). Override the prefix with -DEDGEC_CROSS_PREFIX=... and the
# sysroot with -DEDGEC_SYSROOT=... for another toolchain.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(EDGEC_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "prefix of the cross toolchain's programs")
set(EDGEC_SYSROOT "/usr/aarch64-linux-gnu" CACHE PATH "target libraries (qemu -L and find root)")
set(EDGEC_INSTALL_HINT "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross")

find_program(EDGEC_CROSS_CC ${EDGEC_CROSS_PREFIX}gcc)
if(NOT EDGEC_CROSS_CC)
  message(FATAL_ERROR "${EDGEC_CROSS_PREFIX}gcc not found: install the cross compiler (Debian: ${EDGEC_INSTALL_HINT})")
endif()
set(CMAKE_C_COMPILER ${EDGEC_CROSS_CC})
set(CMAKE_C_FLAGS_INIT "-march=armv8-a")

set(CMAKE_FIND_ROOT_PATH ${EDGEC_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(EDGEC_QEMU qemu-aarch64)
if(EDGEC_QEMU)
  # -cpu max also runs the Armv8.2 dot-product instructions of aarch64-dotprod kernels
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EDGEC_QEMU} -cpu max -L ${EDGEC_SYSROOT})
endif()
