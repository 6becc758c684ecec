# Installs the built wsgate into a temporary prefix, then builds and runs the header-only consumer
# against it with find_package(wsgate), and again with add_subdirectory.
# Variables: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
foreach(f include/wsgate/detail/config.hpp include/wsgate/impl/gateway-inl.hpp)
  if(NOT EXISTS "${WORK_DIR}/prefix/${f}")
    message(FATAL_ERROR "install is missing ${f}")
  endif()
endforeach()

set(consumer "${SOURCE_DIR}/tests/package/header_only_consumer")
run(${CMAKE_COMMAND} -S "${consumer}" -B "${WORK_DIR}/find" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/find")
run("${WORK_DIR}/find/header_only_consumer")

run(${CMAKE_COMMAND} -S "${consumer}" -B "${WORK_DIR}/subdir" -G "${GENERATOR}"
    "-DWSGATE_CONSUMER_SUBDIR=${SOURCE_DIR}" -DCMAKE_BUILD_TYPE=Release
    -DWSGATE_WITH_SQLITE=OFF -DWSGATE_WITH_REDIS=OFF -DWSGATE_WITH_BEAST=OFF -DWSGATE_WITH_AWS=OFF)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/subdir" --target header_only_consumer)
run("${WORK_DIR}/subdir/header_only_consumer")
