# Context switching and coroutine stacks: which sources to build.
#
# Sets, for the top-level CMakeLists.txt:
#   COIL_CONTEXT_SOURCES  context.c, context_ucontext.c, stack.c, and the
#                         assembly switch for this processor (with its C
#                         half, context_asm.c) unless COIL_FORCE_UCONTEXT
#   COIL_CONTEXT_DEFINES  COIL_HAVE_ASM_CONTEXT when the assembly is built
#   COIL_CONTEXT_IMPLS    the implementations built, best first (for the
#                         summary and the tests)
#
# The assembly is written for ELF System V targets: x86-64 and AArch64
# Linux and BSDs. Elsewhere (macOS, Windows, 32-bit builds, other CPUs)
# only the portable ucontext implementation is built.

option(COIL_FORCE_UCONTEXT
       "Build only the portable ucontext context switch, no assembly" OFF)

set(COIL_CONTEXT_SOURCES
  src/context.c
  src/context_ucontext.c
  src/stack.c
)
set(COIL_CONTEXT_DEFINES "")
set(COIL_CONTEXT_IMPLS ucontext)

set(_coil_context_asm "")
if(NOT COIL_FORCE_UCONTEXT AND NOT APPLE AND NOT WIN32
   AND CMAKE_SIZEOF_VOID_P EQUAL 8)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
    set(_coil_context_asm src/context_x86_64.S)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    set(_coil_context_asm src/context_aarch64.S)
  endif()
endif()

if(_coil_context_asm)
  list(APPEND COIL_CONTEXT_SOURCES src/context_asm.c ${_coil_context_asm})
  list(APPEND COIL_CONTEXT_DEFINES COIL_HAVE_ASM_CONTEXT)
  list(PREPEND COIL_CONTEXT_IMPLS asm)
elseif(NOT COIL_FORCE_UCONTEXT)
  message(STATUS "coil: no context-switch assembly for "
                 "${CMAKE_SYSTEM_PROCESSOR}; using ucontext")
endif()
unset(_coil_context_asm)
