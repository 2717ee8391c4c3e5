# Run by ctest when it starts (TEST_INCLUDE_FILES), through the per-corpus script torchconform_add_corpus_tests()
# generates, which sets: runner, corpus, prefix, fixture, devices, timeout, extra (runner arguments), ids_file.
# For each device, lists the corpus's results with the runner (`--list --device D`; again only when corpus.json's or
# the runner's content changed since the last list), then registers one test per result id:
#   - a result marked `xfail` there gets SKIP_RETURN_CODE 3: failing as marked, it shows as "Skipped", never as
#     "Passed" (the runner exits 3 when every result it ran was an expected failure);
#   - where every result of a device is marked, one more test, `<prefix>nothing_verifiable__<device>`, runs the whole
#     corpus and fails (exit 3: nothing verified): a corpus that marks everything must not come out green.
# A listing that fails stops ctest with the runner's message: a corpus whose tests cannot be discovered must not look
# like a corpus with no tests.
# The last list is kept under a key of what it depends on, by content, never by file times: corpus.json's SHA-256
# (which chains every manifest's), the runner's and the arguments. A corpus replaced by one with older times (tar x,
# cp -a) is listed again. (A corpus.json that is not a regular file with content, e.g. a FIFO, is never hashed here:
# the runner lists it, and refuses it.)
set(_tc_key "")
if(EXISTS "${corpus}/corpus.json" AND NOT IS_DIRECTORY "${corpus}/corpus.json" AND NOT IS_SYMLINK "${corpus}/corpus.json")
  file(SIZE "${corpus}/corpus.json" _tc_size)
  if(_tc_size GREATER 0)
    file(SHA256 "${corpus}/corpus.json" _tc_index_sha)
    file(SHA256 "${runner}" _tc_runner_sha)
    set(_tc_key "${_tc_index_sha} ${_tc_runner_sha} ${extra}")
  endif()
endif()
foreach(_tc_dev IN LISTS devices)
  set(_tc_ids_file "${ids_file}.${_tc_dev}")
  set(_tc_listed_key "")
  if(EXISTS "${_tc_ids_file}.key")
    file(READ "${_tc_ids_file}.key" _tc_listed_key)
  endif()
  if(NOT EXISTS "${_tc_ids_file}" OR _tc_key STREQUAL "" OR NOT _tc_listed_key STREQUAL _tc_key)
    execute_process(COMMAND "${runner}" "${corpus}" --list --device "${_tc_dev}" ${extra} RESULT_VARIABLE _tc_rc
                    OUTPUT_VARIABLE _tc_out ERROR_VARIABLE _tc_err TIMEOUT 600)
    if(NOT _tc_rc EQUAL 0)
      file(REMOVE "${_tc_ids_file}" "${_tc_ids_file}.key")
      message(FATAL_ERROR "torchconform: cannot list the results of ${corpus} (${runner} --list: ${_tc_rc}):\n"
                          "${_tc_err}")
    endif()
    file(WRITE "${_tc_ids_file}" "${_tc_out}")
    file(WRITE "${_tc_ids_file}.key" "${_tc_key}")
  endif()
  file(STRINGS "${_tc_ids_file}" _tc_lines)
  set(_tc_verifiable 0)
  foreach(_tc_line IN LISTS _tc_lines)
    # A line is an id, case[:variant[@runtime]]/set or /* (corpus names are [a-z][a-z0-9_]*), and maybe " xfail":
    # anything else is refused before it becomes a test name or an argument.
    if(NOT _tc_line MATCHES "^([a-z][a-z0-9_]*(:[a-z][a-z0-9_]*(@[a-z]+)?)?/([a-z][a-z0-9_]*|\\*))( xfail)?$")
      file(REMOVE "${_tc_ids_file}")
      message(FATAL_ERROR "torchconform: ${corpus}: the runner listed '${_tc_line}', which is not a result id")
    endif()
    set(_tc_id "${CMAKE_MATCH_1}")
    set(_tc_name "${prefix}${_tc_id}__${_tc_dev}")
    # One result per process: ctest is the isolation (its TIMEOUT kills a hang, a crash fails the test), so the
    # runner runs it in-process instead of forking a child of its own.
    add_test("${_tc_name}" "${runner}" "${corpus}" --result "${_tc_id}" --device "${_tc_dev}" --quiet --no-isolate
             ${extra})
    set_tests_properties("${_tc_name}" PROPERTIES FIXTURES_REQUIRED "${fixture}" TIMEOUT "${timeout}"
                                                  LABELS "torchconform;${_tc_dev}")
    if(_tc_line MATCHES " xfail$")
      set_tests_properties("${_tc_name}" PROPERTIES SKIP_RETURN_CODE 3)
    else()
      set(_tc_verifiable 1)
    endif()
    if(_tc_dev STREQUAL "cuda")
      set_tests_properties("${_tc_name}" PROPERTIES RESOURCE_GROUPS "gpus:1")
    endif()
  endforeach()
  if(NOT _tc_verifiable)
    set(_tc_name "${prefix}nothing_verifiable__${_tc_dev}")
    add_test("${_tc_name}" "${runner}" "${corpus}" --device "${_tc_dev}" --quiet --no-isolate ${extra})
    set_tests_properties("${_tc_name}" PROPERTIES FIXTURES_REQUIRED "${fixture}" TIMEOUT "${timeout}"
                                                  LABELS "torchconform;${_tc_dev}")
  endif()
endforeach()
