/* A shared library without the edgec kernel table (test_hosted's "nosyms" case). */
int edgec_test_not_a_kernel_library(void);
int edgec_test_not_a_kernel_library(void) { return 42; }
