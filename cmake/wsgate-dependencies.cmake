# The third-party packages each wsgate module needs beyond the core's (nlohmann_json, Threads).
# The build (CMakeLists.txt) and the installed wsgateConfig.cmake both use this file, so a module
# is built and found on the same terms.
#
# wsgate_find_module_dependencies(<module> <missing-var> [FOR_BUILD])
#   Looks up, quietly, what <module> needs and sets <missing-var> to a list naming each missing
#   package and the Debian package that provides it (empty when everything was found). With
#   FOR_BUILD it also looks up what is needed only to compile the module (Boost for beast).
#   The imported targets it creates: OpenSSL::Crypto, SQLite::SQLite3, hiredis::hiredis,
#   CURL::libcurl, Boost::headers.
#   Honours CMAKE_DISABLE_FIND_PACKAGE_<Package> like find_package does.
include_guard(GLOBAL)

# hiredis::hiredis from hiredis's own CMake package (hiredis >= 1.0, vcpkg, Conan), else from
# pkg-config (Debian 12 ships hiredis 0.14 with a .pc file but no imported target).
function(_wsgate_find_hiredis)
  if(TARGET hiredis::hiredis)
    return()
  endif()
  find_package(hiredis CONFIG QUIET)
  if(TARGET hiredis::hiredis)
    return()
  endif()
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(wsgate_hiredis QUIET IMPORTED_TARGET hiredis)
    if(TARGET PkgConfig::wsgate_hiredis)
      add_library(hiredis::hiredis INTERFACE IMPORTED)
      target_link_libraries(hiredis::hiredis INTERFACE PkgConfig::wsgate_hiredis)
    endif()
  endif()
endfunction()

function(wsgate_find_module_dependencies module out)
  cmake_parse_arguments(W "FOR_BUILD" "" "" ${ARGN})
  set(missing "")
  # dynamodb needs what aws needs (it links wsgate::aws).
  if(module STREQUAL "auth" OR module STREQUAL "aws" OR module STREQUAL "dynamodb")
    if(NOT TARGET OpenSSL::Crypto)
      find_package(OpenSSL 1.1.1 QUIET)
    endif()
    if(NOT TARGET OpenSSL::Crypto)
      list(APPEND missing "OpenSSL >= 1.1.1 (Debian: libssl-dev)")
    endif()
  endif()
  if(module STREQUAL "aws" OR module STREQUAL "dynamodb")
    if(NOT TARGET CURL::libcurl)
      find_package(CURL QUIET)
    endif()
    if(NOT TARGET CURL::libcurl)
      list(APPEND missing "libcurl (Debian: libcurl4-openssl-dev)")
    endif()
  elseif(module STREQUAL "sqlite")
    if(NOT TARGET SQLite::SQLite3)
      find_package(SQLite3 QUIET)
    endif()
    if(NOT TARGET SQLite::SQLite3)
      list(APPEND missing "SQLite3 (Debian: libsqlite3-dev)")
    endif()
  elseif(module STREQUAL "redis")
    _wsgate_find_hiredis()
    if(NOT TARGET hiredis::hiredis)
      list(APPEND missing "hiredis, through its CMake package or pkg-config (Debian: libhiredis-dev and pkgconf)")
    endif()
  elseif(module STREQUAL "beast" AND W_FOR_BUILD)
    # Header-only and private to wsgate::beast: users of the installed library need no Boost.
    if(NOT TARGET Boost::headers)
      find_package(Boost 1.74 QUIET)
    endif()
    if(NOT TARGET Boost::headers)
      list(APPEND missing "Boost >= 1.74 headers (Debian: libboost-dev)")
    endif()
  endif()
  set(${out} "${missing}" PARENT_SCOPE)
endfunction()
