# torchconform_add_corpus_tests(CORPUS dir [DEVICES cpu cuda] [PREFIX name] [TIMEOUT seconds] [RUNNER target-or-path]
#                               [PYTHON interpreter] [RUNNER_ARGS arg...] [PER_CASE])
#
# One ctest test per result of a torchconform corpus (case x artifact x input set, the id the runner prints:
# `golden.simple_cnn/b4_32x32__cpu`, `golden.simple_cnn:frozen/b4_32x32__cpu`) and device, each running
# `torchconform-run CORPUS --result ID --device DEV --no-isolate` (exit 0 pass, 1 mismatch, 2 error; the test's process
# is the isolation: ctest's TIMEOUT kills a hang, a crash fails the test), plus a fixture
# test that compiles the corpus's torch.export programs into AOTInductor packages first (`python -m torchconform
# compile`, cached: a warm cache compiles nothing), so a plain `ctest` works on a fresh build. PER_CASE registers one
# test per case x device instead (one process per case: fewer, coarser tests).
#
# The results are discovered the way gtest_discover_tests(DISCOVERY_MODE PRE_TEST) discovers GoogleTest cases: when
# ctest starts, the runner lists the corpus's plan (`--list`; re-listed only when corpus.json's or the runner's content changed),
# so the tests follow a re-exported corpus and the runtimes this runner has (a program's `@aoti` results exist where
# AOTInductor is built in). Case names are checked at configure time and every listed id again before it becomes a
# test name or argument: a corpus is data, and nothing in it reaches a command line unchecked. CUDA tests declare
# RESOURCE_GROUPS "gpus:1": run them with `ctest --resource-spec-file <file>` (docs/corpus-format.md shows one).
# RUNNER_ARGS go to every runner command, the listing included (e.g. --load-library for operator libraries).
# Single- and multi-config generators both work (the discovery script is generated per configuration).
set(_torchconform_discover_script "${CMAKE_CURRENT_LIST_DIR}/torchconformDiscover.cmake")

function(torchconform_add_corpus_tests)
  cmake_parse_arguments(TC "PER_CASE" "CORPUS;PREFIX;TIMEOUT;RUNNER;PYTHON" "DEVICES;RUNNER_ARGS" ${ARGN})
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
  math(EXPR limit "${TC_TIMEOUT} + 120")
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON name GET "${index}" cases ${i} name)
    if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
      message(FATAL_ERROR "torchconform_add_corpus_tests: ${corpus}/corpus.json: case name '${name}' is not "
                          "[a-z][a-z0-9_]*")
    endif()
    if(NOT TC_PER_CASE)
      continue()
    endif()
    foreach(dev IN LISTS TC_DEVICES)
      set(test "${TC_PREFIX}${name}__${dev}")
      add_test(NAME "${test}" COMMAND ${TC_RUNNER} "${corpus}" --case "${name}" --device ${dev} --quiet
                                      --timeout ${TC_TIMEOUT} ${TC_RUNNER_ARGS})
      set_tests_properties("${test}" PROPERTIES FIXTURES_REQUIRED "${fixture}" TIMEOUT ${limit}
                                                LABELS "torchconform;${dev}")
      if(dev STREQUAL "cuda")
        set_tests_properties("${test}" PROPERTIES RESOURCE_GROUPS "gpus:1")
      endif()
    endforeach()
  endforeach()
  if(TC_PER_CASE)
    return()
  endif()

  # Per result: a script ctest includes when it starts (TEST_INCLUDE_FILES) lists the plan with the runner and
  # registers the tests. Values reach it as bracket arguments, never spliced into code unquoted.
  if(TARGET ${TC_RUNNER})
    set(runner_file "$<TARGET_FILE:${TC_RUNNER}>")
  else()
    set(runner_file "${TC_RUNNER}")
  endif()
  string(MAKE_C_IDENTIFIER "${TC_PREFIX}${corpus}" tag)
  set(base "${CMAKE_CURRENT_BINARY_DIR}/torchconform_${tag}")
  set(q "]==]")  # the closing bracket no value may contain (checked below)
  foreach(value IN ITEMS "${corpus}" "${TC_PREFIX}" "${fixture}" "${TC_RUNNER}" ${TC_RUNNER_ARGS})
    string(FIND "${value}" "${q}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "torchconform_add_corpus_tests: '${value}' contains '${q}'")
    endif()
  endforeach()
  set(args "")
  foreach(a IN LISTS TC_RUNNER_ARGS)
    string(APPEND args " [==[${a}]==]")
  endforeach()
  file(GENERATE OUTPUT "${base}-$<CONFIG>.cmake" CONTENT "set(runner [==[${runner_file}]==])
set(corpus [==[${corpus}]==])
set(prefix [==[${TC_PREFIX}]==])
set(fixture [==[${fixture}]==])
set(devices ${TC_DEVICES})
set(timeout ${TC_TIMEOUT})
set(extra${args})
set(ids_file [==[${base}-$<CONFIG>.ids]==])
include([==[${_torchconform_discover_script}]==])
")
  # (ctest knows its configuration only when it runs: -C, else the one configuration generated)
  file(WRITE "${base}.cmake" "set(_tc_base [==[${base}]==])
if(EXISTS \"\${_tc_base}-\${CTEST_CONFIGURATION_TYPE}.cmake\")
  include(\"\${_tc_base}-\${CTEST_CONFIGURATION_TYPE}.cmake\")
else()
  file(GLOB _tc_configs \"\${_tc_base}-*.cmake\")
  list(GET _tc_configs 0 _tc_config)
  include(\"\${_tc_config}\")
endif()
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${base}.cmake")
endfunction()
