cmake_minimum_required(VERSION 3.20)
# One package test case (CASE), run by ctest from the build tree. The `install` case installs the
# built wsgate into WORK_DIR/prefix once; the find_* cases build and run small consumer projects
# against that prefix; the subdir_* cases use wsgate's sources through add_subdirectory.
# Variables: CASE, BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR, CXX_COMPILER, LAUNCHER,
# WARNINGS_AS_ERRORS (the build tree's)
set(prefix "${WORK_DIR}/prefix")
set(consumer "${SOURCE_DIR}/tests/package/consumer")
# Every optional dependency, made unfindable for the consumers that must not need it. (FindOpenSSL
# needs pkg_check_modules on Unix: OpenSSL goes whenever PkgConfig does.)
set(no_optional_deps
  -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=TRUE -DCMAKE_DISABLE_FIND_PACKAGE_Boost=TRUE
  -DCMAKE_DISABLE_FIND_PACKAGE_CURL=TRUE -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=TRUE
  -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=TRUE -DCMAKE_DISABLE_FIND_PACKAGE_hiredis=TRUE)
# Consumers build unoptimised (Debug): compiling is most of these tests' time, and linking a
# Debug program to the installed optimised libraries is what many users do.
set(common -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(LAUNCHER)
  list(APPEND common "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()

# run(<command>...): the command must succeed; its output is kept in `out` (PARENT_SCOPE).
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${o}\n${e}")
  endif()
  message(STATUS "${o}${e}")
  set(out "${o}${e}" PARENT_SCOPE)
endfunction()

# run_fails(<command>...): the command must fail; its output is kept in `out` (PARENT_SCOPE).
function(run_fails)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(rc EQUAL 0)
    message(FATAL_ERROR "command should have failed: ${ARGN}\n${o}\n${e}")
  endif()
  set(out "${o}${e}" PARENT_SCOPE)
endfunction()

# expect(<text> <substring>...): each substring occurs in text.
function(expect text)
  string(REGEX REPLACE "[ \t\r\n]+" " " flat "${text}")  # messages are wrapped to the terminal
  foreach(s IN LISTS ARGN)
    string(FIND "${flat}" "${s}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "expected \"${s}\" in:\n${text}")
    endif()
  endforeach()
endfunction()

# List-valued -D arguments for the consumer project use commas; a ';' would split the argument.
# consumer(<name> <cmake args>...): configures, builds and runs the consumer project in WORK_DIR/<name>.
function(consumer name)
  file(REMOVE_RECURSE "${WORK_DIR}/${name}")
  run(${CMAKE_COMMAND} -S "${consumer}" -B "${WORK_DIR}/${name}" ${common} ${ARGN})
  run(${CMAKE_COMMAND} --build "${WORK_DIR}/${name}")
  foreach(program consumer beast_consumer all_consumer)
    if(EXISTS "${WORK_DIR}/${name}/${program}")
      run("${WORK_DIR}/${name}/${program}")
    endif()
  endforeach()
endfunction()

# project_with(<dir> <body>): a one-file CMake project.
function(project_with dir body)
  file(WRITE "${dir}/CMakeLists.txt"
    "cmake_minimum_required(VERSION 3.20)\nproject(p LANGUAGES CXX)\n${body}\n")
endfunction()

if(CASE STREQUAL "install")
  file(REMOVE_RECURSE "${WORK_DIR}")
  run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
  foreach(f lib/cmake/wsgate/wsgateConfig.cmake lib/cmake/wsgate/wsgateConfigVersion.cmake
            lib/cmake/wsgate/wsgate-dependencies.cmake lib/cmake/wsgate/wsgateTargets.cmake
            include/wsgate/wsgate.hpp)
    if(NOT EXISTS "${prefix}/${f}")
      message(FATAL_ERROR "install is missing ${f}")
    endif()
  endforeach()
  # The exported files must name libraries by imported target or relative to the prefix, never
  # by an absolute path of the build machine (such a package breaks on any other machine).
  file(GLOB cmake_files "${prefix}/lib/cmake/wsgate/*.cmake")
  foreach(f IN LISTS cmake_files)
    file(STRINGS "${f}" lines REGEX "(^|[\";( ])/[^\";) ]*\\.(so|a|dylib|lib)([\";) .]|$)")
    if(lines)
      message(FATAL_ERROR "${f} names a library by absolute path:\n${lines}")
    endif()
  endforeach()
  # And the check itself must catch one.
  file(WRITE "${WORK_DIR}/probe.cmake" "  INTERFACE_LINK_LIBRARIES \"wsgate::wsgate;/usr/lib/x86_64-linux-gnu/libhiredis.so\"\n")
  file(STRINGS "${WORK_DIR}/probe.cmake" lines REGEX "(^|[\";( ])/[^\";) ]*\\.(so|a|dylib|lib)([\";) .]|$)")
  if(NOT lines)
    message(FATAL_ERROR "the absolute-path check misses /usr/lib/x86_64-linux-gnu/libhiredis.so")
  endif()

elseif(CASE STREQUAL "find_core")
  # No COMPONENTS and no optional dependency on the machine: the core and the modules that need
  # nothing else (client, stream, beast: Boost is build-only) load; the others are quietly absent.
  consumer(find_core "-DCMAKE_PREFIX_PATH=${prefix}" ${no_optional_deps}
    "-DWSGATE_EXPECT_TARGETS=wsgate,client,stream,beast" "-DWSGATE_EXPECT_ABSENT=auth,sqlite,redis,aws,dynamodb,stores")

elseif(CASE STREQUAL "find_beast")
  # COMPONENTS beast pulls in client and nothing else, still without any optional dependency.
  consumer(find_beast "-DCMAKE_PREFIX_PATH=${prefix}" ${no_optional_deps}
    -DWSGATE_CONSUMER_COMPONENTS=beast -DWSGATE_CONSUMER_PROGRAMS=beast
    "-DWSGATE_EXPECT_TARGETS=wsgate,beast,client" "-DWSGATE_EXPECT_ABSENT=auth,stream,sqlite,redis,aws,dynamodb,stores")

elseif(CASE STREQUAL "find_all")
  consumer(find_all "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DWSGATE_CONSUMER_COMPONENTS=auth,client,stream,sqlite,redis,stores,beast,aws,dynamodb"
    "-DWSGATE_CONSUMER_PROGRAMS=core,all"
    "-DWSGATE_EXPECT_TARGETS=wsgate,auth,client,stream,sqlite,redis,stores,beast,aws,dynamodb")

elseif(CASE STREQUAL "find_refusals")
  # A required module whose dependencies are missing: find_package fails and names them.
  project_with("${WORK_DIR}/missing" "find_package(wsgate CONFIG REQUIRED COMPONENTS redis sqlite)")
  run_fails(${CMAKE_COMMAND} -S "${WORK_DIR}/missing" -B "${WORK_DIR}/missing/build" ${common}
    "-DCMAKE_PREFIX_PATH=${prefix}" ${no_optional_deps})
  expect("${out}" "wsgate::redis: needs hiredis" "libhiredis-dev" "wsgate::sqlite: needs SQLite3" "libsqlite3-dev")
  # stores links sqlite and redis: asking for it alone reports the module it lacks.
  project_with("${WORK_DIR}/stores" "find_package(wsgate CONFIG REQUIRED COMPONENTS stores)")
  run_fails(${CMAKE_COMMAND} -S "${WORK_DIR}/stores" -B "${WORK_DIR}/stores/build" ${common}
    "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=TRUE)
  expect("${out}" "wsgate::stores: it links wsgate::sqlite, which is unavailable: needs SQLite3")
  # A module this wsgate does not have.
  project_with("${WORK_DIR}/unknown" "find_package(wsgate CONFIG REQUIRED COMPONENTS nosuch)")
  run_fails(${CMAKE_COMMAND} -S "${WORK_DIR}/unknown" -B "${WORK_DIR}/unknown/build" ${common}
    "-DCMAKE_PREFIX_PATH=${prefix}")
  expect("${out}" "wsgate::nosuch: this wsgate was built without it")
  # OPTIONAL_COMPONENTS with missing dependencies: found, without those modules; QUIET without
  # REQUIRED: not found, and no error.
  project_with("${WORK_DIR}/optional" [[
find_package(wsgate CONFIG REQUIRED COMPONENTS stream OPTIONAL_COMPONENTS redis)
if(NOT TARGET wsgate::stream OR TARGET wsgate::redis OR wsgate_redis_FOUND)
  message(FATAL_ERROR "stream must be loaded and redis left out")
endif()
find_package(wsgate CONFIG QUIET COMPONENTS sqlite)
if(wsgate_FOUND)
  message(FATAL_ERROR "wsgate must be reported missing when a requested module is")
endif()]])
  run(${CMAKE_COMMAND} -S "${WORK_DIR}/optional" -B "${WORK_DIR}/optional/build" ${common}
    "-DCMAKE_PREFIX_PATH=${prefix}" ${no_optional_deps})
  # A version the installed package must refuse (SameMajorVersion).
  project_with("${WORK_DIR}/major" [[
find_package(wsgate 99 CONFIG QUIET)
if(wsgate_FOUND)
  message(FATAL_ERROR "wsgate 99 must not be found")
endif()]])
  run(${CMAKE_COMMAND} -S "${WORK_DIR}/major" -B "${WORK_DIR}/major/build" ${common} "-DCMAKE_PREFIX_PATH=${prefix}")

elseif(CASE MATCHES "^(find|subdir)_header_only$")
  # The core header-only: the consumer links wsgate::header_only and no wsgate library, so a core
  # definition missing from the headers fails its link, and its two translation units fail it on a
  # definition that is not inline. It needs no optional dependency either way.
  set(dir "${WORK_DIR}/${CASE}")
  file(REMOVE_RECURSE "${dir}")
  if(CASE STREQUAL "find_header_only")
    foreach(f include/wsgate/detail/config.hpp include/wsgate/impl/gateway-inl.hpp)
      if(NOT EXISTS "${prefix}/${f}")
        message(FATAL_ERROR "install is missing ${f}")
      endif()
    endforeach()
    set(how "-DCMAKE_PREFIX_PATH=${prefix}")
  else()
    set(how "-DWSGATE_CONSUMER_SUBDIR=${SOURCE_DIR}" "-DWSGATE_WARNINGS_AS_ERRORS=${WARNINGS_AS_ERRORS}")
  endif()
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/header_only_consumer" -B "${dir}" ${common} ${how}
      ${no_optional_deps} -DWSGATE_WITH_AUTH=OFF)
  run(${CMAKE_COMMAND} --build "${dir}" --target header_only_consumer)
  run("${dir}/header_only_consumer")

elseif(CASE STREQUAL "subdir_core")
  consumer(subdir_core "-DWSGATE_CONSUMER_SUBDIR=${SOURCE_DIR}" "-DWSGATE_WARNINGS_AS_ERRORS=${WARNINGS_AS_ERRORS}"
    -DWSGATE_WITH_AUTH=OFF -DWSGATE_WITH_SQLITE=OFF -DWSGATE_WITH_REDIS=OFF -DWSGATE_WITH_BEAST=OFF -DWSGATE_WITH_AWS=OFF
    -DWSGATE_WITH_DYNAMODB=OFF
    "-DWSGATE_EXPECT_TARGETS=wsgate,client,stream,stores" "-DWSGATE_EXPECT_ABSENT=auth,sqlite,redis,beast,aws,dynamodb")

elseif(CASE STREQUAL "subdir_skip")
  # A host project on a machine without the optional dependencies: its configure succeeds, and
  # says for each skipped module what is missing, where Debian has it and how to turn it off.
  set(dir "${WORK_DIR}/subdir_skip")
  file(REMOVE_RECURSE "${dir}")
  run(${CMAKE_COMMAND} -S "${consumer}" -B "${dir}" ${common} "-DWSGATE_CONSUMER_SUBDIR=${SOURCE_DIR}"
    ${no_optional_deps} "-DWSGATE_EXPECT_ABSENT=auth,sqlite,redis,beast,aws,dynamodb")
  expect("${out}"
    "skipping wsgate::auth: wsgate::auth needs OpenSSL >= 1.1.1 (Debian: libssl-dev)" "-DWSGATE_WITH_AUTH=OFF"
    "skipping wsgate::sqlite: wsgate::sqlite needs SQLite3 (Debian: libsqlite3-dev)" "-DWSGATE_WITH_SQLITE=OFF"
    "skipping wsgate::redis: wsgate::redis needs hiredis" "(Debian: libhiredis-dev and pkgconf)" "-DWSGATE_WITH_REDIS=OFF"
    "skipping wsgate::beast: wsgate::beast needs Boost >= 1.74 headers (Debian: libboost-dev)" "-DWSGATE_WITH_BEAST=OFF"
    "skipping wsgate::aws: wsgate::aws needs OpenSSL >= 1.1.1 (Debian: libssl-dev), libcurl (Debian: libcurl4-openssl-dev)"
    "-DWSGATE_WITH_AWS=OFF" "skipping wsgate::dynamodb:" "-DWSGATE_WITH_DYNAMODB=OFF")
  # With WSGATE_REQUIRE_BACKENDS (the default when wsgate is the top-level project) it fails.
  run_fails(${CMAKE_COMMAND} -S "${consumer}" -B "${dir}-required" ${common} "-DWSGATE_CONSUMER_SUBDIR=${SOURCE_DIR}"
    -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=TRUE -DWSGATE_REQUIRE_BACKENDS=ON)
  expect("${out}" "wsgate::sqlite needs SQLite3 (Debian: libsqlite3-dev)" "-DWSGATE_WITH_SQLITE=OFF")

else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
