/* Compiles the generated glue (kernel_glue_test.c, made by CMake) on its own, exactly as
 * the compiler links it into kernels.so: no edgec header in this translation unit. */
#include "kernel_glue_test.c"
