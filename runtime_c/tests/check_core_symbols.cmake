# Fails if the core runtime library references malloc, calloc, realloc or free.
# Usage: cmake -DNM=<nm> -DLIB=<libedgec_runtime.a> -P check_core_symbols.cmake
execute_process(COMMAND ${NM} -u ${LIB} OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REGEX MATCHALL "[ \t](malloc|calloc|realloc|free|aligned_alloc|posix_memalign)\n" heap "${undefined}")
if(heap)
  message(FATAL_ERROR "the core runtime references the heap: ${heap}")
endif()
message(STATUS "core runtime undefined symbols:\n${undefined}")
