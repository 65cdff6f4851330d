# CMake toolchain file: 32-bit ARM Linux, hard float (edgec target `armv7`: Armv7-A, NEON, VFPv4) with
# Debian's cross compiler. Builds the edgec runtime (or your application with it) for the board:
#
#   cmake -S . -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake
#   cmake --build build-armhf
#
# Debian/Ubuntu: apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross (qemu-user to run
# the results here: CMAKE_CROSSCOMPILING_EMULATOR is set when qemu-arm is installed, so
# ctest runs the C tests under it). Override the prefix with -DEDGEC_CROSS_PREFIX=... and the
# sysroot with -DEDGEC_SYSROOT=... for another toolchain.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(EDGEC_CROSS_PREFIX "arm-linux-gnueabihf-" CACHE STRING "prefix of the cross toolchain's programs")
set(EDGEC_SYSROOT "/usr/arm-linux-gnueabihf" CACHE PATH "target libraries (qemu -L and find root)")
set(EDGEC_INSTALL_HINT "apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross")

find_program(EDGEC_CROSS_CC ${EDGEC_CROSS_PREFIX}gcc)
if(NOT EDGEC_CROSS_CC)
  message(FATAL_ERROR "${EDGEC_CROSS_PREFIX}gcc not found: install the cross compiler (Debian: ${EDGEC_INSTALL_HINT})")
endif()
set(CMAKE_C_COMPILER ${EDGEC_CROSS_CC})
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")

set(CMAKE_FIND_ROOT_PATH ${EDGEC_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(EDGEC_QEMU qemu-arm)
if(EDGEC_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EDGEC_QEMU} -L ${EDGEC_SYSROOT})
endif()
