# CMake toolchain file: Cortex-M7 bare metal (edgec target `cortex-m7`: Armv7E-M, FPv5-D16,
# hard float) with the GNU Arm Embedded toolchain. Builds the edgec runtime core (no OS, no
# malloc) into your firmware's build; the flags match the ones edgec builds the artifact's
# libmodel.a / libedgec_runtime.a with (targets/cortex-m7.toml), so the objects link together:
#
#   cmake -S . -B build-m7 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-none-eabi-cortex-m7.cmake \
#         -DEDGEC_BUILD_HOSTED=OFF -DEDGEC_BUILD_EXAMPLES=OFF -DEDGEC_BUILD_TESTS=OFF
#   cmake --build build-m7          # -> libedgec_runtime.a
#
# Debian/Ubuntu: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi. A part with the
# single-precision FPv5 (fpv5-sp-d16) needs -DEDGEC_ARM_FPU=fpv5-sp-d16 (and mattr "-fp64" in
# its target file).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)   # no startup code / linker script for checks

set(EDGEC_CROSS_PREFIX "arm-none-eabi-" CACHE STRING "prefix of the cross toolchain's programs")
set(EDGEC_ARM_CPU "cortex-m7" CACHE STRING "-mcpu")
set(EDGEC_ARM_FPU "fpv5-d16" CACHE STRING "-mfpu")
set(EDGEC_INSTALL_HINT "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")

find_program(EDGEC_CROSS_CC ${EDGEC_CROSS_PREFIX}gcc)
if(NOT EDGEC_CROSS_CC)
  message(FATAL_ERROR "${EDGEC_CROSS_PREFIX}gcc not found: install the cross compiler (Debian: ${EDGEC_INSTALL_HINT})")
endif()
set(CMAKE_C_COMPILER ${EDGEC_CROSS_CC})
find_program(CMAKE_AR ${EDGEC_CROSS_PREFIX}ar)
find_program(CMAKE_SIZE ${EDGEC_CROSS_PREFIX}size)
set(CMAKE_C_FLAGS_INIT
    "-mcpu=${EDGEC_ARM_CPU} -mthumb -mfloat-abi=hard -mfpu=${EDGEC_ARM_FPU} -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,--gc-sections")
set(CMAKE_POSITION_INDEPENDENT_CODE OFF)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
