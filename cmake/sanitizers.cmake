# Sanitizer and libFuzzer builds (docs/testing.md). Both apply to every target
# of the build directory, so the libraries the tests and fuzzers exercise are
# instrumented, not only the test code.
set(KVCRI_SANITIZE "" CACHE STRING
    "Sanitizers for every target (-fsanitize=...): address,undefined | thread | empty for none")
option(KVCRI_FUZZ "Build the libFuzzer targets of test/fuzz (needs clang)" OFF)
set(KVCRI_FUZZ_SECONDS 60 CACHE STRING "How long ctest -L fuzz runs each fuzz target (KVCRI_FUZZ_SECONDS in the environment overrides)")

if(KVCRI_SANITIZE)
  if(KVCRI_SANITIZE MATCHES "thread" AND KVCRI_SANITIZE MATCHES "address")
    message(FATAL_ERROR "KVCRI_SANITIZE=\"${KVCRI_SANITIZE}\": thread and address cannot be combined")
  endif()
  # Stop at the first report: a sanitizer finding fails the test, it does not scroll by.
  add_compile_options(-fsanitize=${KVCRI_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${KVCRI_SANITIZE} -fno-sanitize-recover=all)
  # Code that must make room for a sanitizer runtime (the extraction child's seccomp allowlist) asks this.
  add_compile_definitions(KVCRI_SANITIZER_BUILD=1)
  if(KVCRI_SANITIZE MATCHES "undefined")
    # UBSan's vptr check probes an object's memory through a pipe; the image
    # extraction child's seccomp filter denies pipe(2), so every virtual call
    # it makes (its BlobSource, nlohmann's output adapter, inline code shared
    # with every other file) was reported as an "invalid vptr".
    add_compile_options(-fno-sanitize=vptr)
    add_link_options(-fno-sanitize=vptr)
  endif()
endif()

# The sanitizer builds are clang's: they run its thread-safety analysis
# (ABSL_GUARDED_BY and friends) on everything they compile, as errors, so CI's
# full run needs no separate pass (ctest's thread_safety does it for gcc trees).
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  add_compile_options(-Wthread-safety -Werror=thread-safety)
endif()

if(KVCRI_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "KVCRI_FUZZ=ON needs clang (-DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14); "
                        "this build uses \"${CMAKE_CXX_COMPILER_ID}\"")
  endif()
  if(NOT KVCRI_SANITIZE MATCHES "address")
    message(FATAL_ERROR "KVCRI_FUZZ=ON needs KVCRI_SANITIZE=address,undefined so a fuzzer finds more than crashes")
  endif()
  # Coverage feedback from every library, not only the harnesses; the
  # harnesses themselves link -fsanitize=fuzzer (libFuzzer's main).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
