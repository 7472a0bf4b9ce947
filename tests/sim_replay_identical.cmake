# cmake -DKEEL=<keel binary> -DSEED=<seed> -DWORK_DIR=<dir> -P sim_replay_identical.cmake
# Runs `keel sim --seed SEED --trace` twice and fails unless both outputs are byte-identical.
foreach(var KEEL SEED WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "sim_replay_identical: ${var} is not set")
  endif()
endforeach()

foreach(run 1 2)
  execute_process(COMMAND ${KEEL} sim --seed ${SEED} --trace
                  OUTPUT_FILE ${WORK_DIR}/sim_replay_${run}.txt
                  RESULT_VARIABLE code_${run})
endforeach()
if(NOT code_1 STREQUAL code_2)
  message(FATAL_ERROR "sim_replay_identical: exit codes differ: ${code_1} and ${code_2}")
endif()
file(SHA256 ${WORK_DIR}/sim_replay_1.txt first)
file(SHA256 ${WORK_DIR}/sim_replay_2.txt second)
file(SIZE ${WORK_DIR}/sim_replay_1.txt size)
if(NOT first STREQUAL second)
  message(FATAL_ERROR "sim_replay_identical: seed ${SEED} printed different output twice; "
                      "compare ${WORK_DIR}/sim_replay_1.txt and sim_replay_2.txt")
endif()
if(size LESS 1000)
  message(FATAL_ERROR "sim_replay_identical: output suspiciously short (${size} bytes)")
endif()
message(STATUS "sim_replay_identical: seed ${SEED}: ${size} bytes, identical (exit ${code_1})")
