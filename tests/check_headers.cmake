# Compiles every public header alone, as a user's program would include
# it: a translation unit holding only `#include <coil/x.h>` (twice, for
# the include guard), a plain -I, strict standard mode, warnings as
# errors. The headers are found when the test runs (include/coil.h and
# include/coil/*.h), so a new header is checked without being listed.
#
#   cmake -DINCLUDE_DIR=<dir> -DCOMPILER=<gcc|clang|g++|clang++>
#         -DLANG=<C|CXX> -DWORK_DIR=<dir> -P check_headers.cmake
#
# A compiler that is not installed is skipped, saying so (the test's
# SKIP_REGULAR_EXPRESSION matches "not installed: skipped").
cmake_minimum_required(VERSION 3.16)
foreach(var INCLUDE_DIR COMPILER LANG WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_headers.cmake: ${var} is not set")
  endif()
endforeach()

find_program(cc_path NAMES ${COMPILER})
if(NOT cc_path)
  message("headers: ${COMPILER} not installed: skipped")
  return()
endif()

if(LANG STREQUAL "C")
  set(flags -x c -std=c11 -Wall -Wextra -Wpedantic -Werror)
  set(ext c)
elseif(LANG STREQUAL "CXX")
  set(flags -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror)
  set(ext cpp)
else()
  message(FATAL_ERROR "check_headers.cmake: LANG must be C or CXX")
endif()

file(GLOB headers RELATIVE ${INCLUDE_DIR}
     ${INCLUDE_DIR}/coil.h ${INCLUDE_DIR}/coil/*.h)
list(SORT headers)
list(LENGTH headers count)
if(count LESS 2 OR NOT "coil.h" IN_LIST headers)
  message(FATAL_ERROR "headers: found only '${headers}' in ${INCLUDE_DIR}: "
                      "the check saw nothing")
endif()

list(JOIN flags " " flags_text)
file(MAKE_DIRECTORY ${WORK_DIR})
set(bad "")
foreach(header ${headers})
  string(MAKE_C_IDENTIFIER ${header} stem)
  set(tu ${WORK_DIR}/${stem}.${ext})
  file(WRITE ${tu} "#include <${header}>\n#include <${header}>\n")
  execute_process(
    COMMAND ${cc_path} ${flags} -I${INCLUDE_DIR} -fsyntax-only ${tu}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message("--- ${header} alone, ${COMPILER} ${flags_text}:\n${out}")
    list(APPEND bad ${header})
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "headers that do not compile alone with ${COMPILER}: "
                      "${bad}")
endif()
message(STATUS "${count} public headers compile alone with ${cc_path} "
               "${flags_text}")
