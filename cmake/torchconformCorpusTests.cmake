# torchconform_add_corpus_tests(CORPUS dir [DEVICES cpu cuda] [PREFIX name] [TIMEOUT seconds] [RUNNER target-or-path]
#                               [PYTHON interpreter])
#
# One ctest test per case x device of a torchconform corpus, each running `torchconform-run CORPUS --case NAME
# --device DEV` (exit 0 pass, 1 mismatch, 2 error/crash/timeout: a case is isolated in its own process as in any run),
# plus a fixture test that compiles the corpus's torch.export programs into AOTInductor packages first
# (`python -m torchconform compile`, cached: a warm cache compiles nothing), so a plain `ctest` works on a fresh
# build. The case list is read from CORPUS/corpus.json at configure time and CMake re-configures when that file
# changes (a re-exported corpus is re-discovered by the next build). CUDA tests declare RESOURCE_GROUPS "gpus:1":
# run them with `ctest --resource-spec-file <file>` (docs/corpus-format.md shows one) to keep one case per GPU.
#
# Case names are checked against the corpus format's rule ([a-z][a-z0-9_]*) before they become test names and
# arguments: a corpus is data, and nothing in it reaches a command line unchecked.
function(torchconform_add_corpus_tests)
  cmake_parse_arguments(TC "" "CORPUS;PREFIX;TIMEOUT;RUNNER;PYTHON" "DEVICES" ${ARGN})
  if(TC_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "torchconform_add_corpus_tests: unknown arguments ${TC_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TC_CORPUS)
    message(FATAL_ERROR "torchconform_add_corpus_tests: CORPUS <dir> is required")
  endif()
  get_filename_component(corpus "${TC_CORPUS}" ABSOLUTE)
  if(NOT EXISTS "${corpus}/corpus.json")
    message(FATAL_ERROR "torchconform_add_corpus_tests: ${corpus} is not a torchconform corpus (no corpus.json)")
  endif()
  if(NOT TC_DEVICES)
    set(TC_DEVICES cpu)
  endif()
  foreach(dev IN LISTS TC_DEVICES)
    if(NOT dev MATCHES "^(cpu|cuda)$")
      message(FATAL_ERROR "torchconform_add_corpus_tests: DEVICES takes cpu and cuda, got '${dev}'")
    endif()
  endforeach()
  if(NOT DEFINED TC_PREFIX)
    get_filename_component(TC_PREFIX "${corpus}" NAME)
    set(TC_PREFIX "${TC_PREFIX}.")
  endif()
  if(NOT TC_TIMEOUT)
    set(TC_TIMEOUT 600)
  endif()
  if(NOT TC_RUNNER)
    if(TARGET torchconform::torchconform-run)
      set(TC_RUNNER torchconform::torchconform-run)
    elseif(TARGET torchconform-run)
      set(TC_RUNNER torchconform-run)
    else()
      message(FATAL_ERROR "torchconform_add_corpus_tests: no torchconform-run target; find_package(torchconform) "
                          "first or pass RUNNER")
    endif()
  endif()
  if(NOT TC_PYTHON)
    set(TC_PYTHON "${TORCHCONFORM_PYTHON}")
  endif()

  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${corpus}/corpus.json")
  file(READ "${corpus}/corpus.json" index)
  string(JSON count ERROR_VARIABLE err LENGTH "${index}" cases)
  if(err)
    message(FATAL_ERROR "torchconform_add_corpus_tests: ${corpus}/corpus.json: ${err}")
  endif()

  set(fixture "${TC_PREFIX}aoti_packages")
  if("cuda" IN_LIST TC_DEVICES AND "cpu" IN_LIST TC_DEVICES)
    set(compile_devices all)
  else()
    set(compile_devices ${TC_DEVICES})
  endif()
  add_test(NAME "${TC_PREFIX}compile" COMMAND "${TC_PYTHON}" -m torchconform compile "${corpus}"
                                              --device ${compile_devices} --quiet)
  set_tests_properties("${TC_PREFIX}compile" PROPERTIES FIXTURES_SETUP "${fixture}" TIMEOUT 3600
                                                        LABELS "torchconform;compile")
  if(count EQUAL 0)
    return()
  endif()
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON name GET "${index}" cases ${i} name)
    if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
      message(FATAL_ERROR "torchconform_add_corpus_tests: ${corpus}/corpus.json: case name '${name}' is not "
                          "[a-z][a-z0-9_]*")
    endif()
    foreach(dev IN LISTS TC_DEVICES)
      set(test "${TC_PREFIX}${name}__${dev}")
      add_test(NAME "${test}" COMMAND ${TC_RUNNER} "${corpus}" --case "${name}" --device ${dev} --quiet
                                      --timeout ${TC_TIMEOUT})
      math(EXPR limit "${TC_TIMEOUT} + 120")
      set_tests_properties("${test}" PROPERTIES FIXTURES_REQUIRED "${fixture}" TIMEOUT ${limit}
                                                LABELS "torchconform;${dev}")
      if(dev STREQUAL "cuda")
        set_tests_properties("${test}" PROPERTIES RESOURCE_GROUPS "gpus:1")
      endif()
    endforeach()
  endforeach()
endfunction()
