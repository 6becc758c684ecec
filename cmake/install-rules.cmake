# install() + export so that find_package(wsgate CONFIG REQUIRED [COMPONENTS ...]) works.
# The core exports wsgateTargets.cmake; every module registered with wsgate_export_module()
# (src/CMakeLists.txt) exports its own wsgate_<module>Targets.cmake, loaded by wsgateConfig.cmake
# only when the module is wanted and its dependencies are found.
include(CMakePackageConfigHelpers)

set(WSGATE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/wsgate CACHE STRING
  "Where wsgate's CMake package files are installed, relative to the prefix")
mark_as_advanced(WSGATE_CMAKE_DIR)

install(TARGETS wsgate wsgate_header_only EXPORT wsgateTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT wsgateTargets NAMESPACE wsgate:: DESTINATION ${WSGATE_CMAKE_DIR})

get_property(_wsgate_components GLOBAL PROPERTY WSGATE_COMPONENTS)

# The wsgate modules each module links, read from its link properties (wsgate::client for beast;
# sqlite and redis for stores when they are built).
foreach(_c IN LISTS _wsgate_components)
  get_target_property(_links wsgate_${_c} LINK_LIBRARIES)
  get_target_property(_ilinks wsgate_${_c} INTERFACE_LINK_LIBRARIES)
  string(REGEX MATCHALL "wsgate::[A-Za-z0-9_]+" _refs "${_links};${_ilinks}")
  set(_wsgate_links_${_c} "")
  foreach(_r IN LISTS _refs)
    string(REPLACE "wsgate::" "" _r "${_r}")
    if(_r IN_LIST _wsgate_components AND NOT _r STREQUAL _c AND NOT _r IN_LIST _wsgate_links_${_c})
      list(APPEND _wsgate_links_${_c} ${_r})
    endif()
  endforeach()
endforeach()

# Dependency order, so that wsgateConfig.cmake loads a module after the modules it links.
set(_wsgate_ordered "")
set(_pending ${_wsgate_components})
while(_pending)
  set(_progress FALSE)
  foreach(_c IN LISTS _pending)
    set(_ready TRUE)
    foreach(_d IN LISTS _wsgate_links_${_c})
      if(NOT _d IN_LIST _wsgate_ordered)
        set(_ready FALSE)
      endif()
    endforeach()
    if(_ready)
      list(APPEND _wsgate_ordered ${_c})
      list(REMOVE_ITEM _pending ${_c})
      set(_progress TRUE)
    endif()
  endforeach()
  if(NOT _progress)
    message(FATAL_ERROR "wsgate modules link each other in a cycle: ${_pending}")
  endif()
endwhile()

set(WSGATE_CONFIG_MODULES "${_wsgate_ordered}")
set(WSGATE_CONFIG_MODULE_LINKS "")
foreach(_c IN LISTS _wsgate_ordered)
  string(APPEND WSGATE_CONFIG_MODULE_LINKS "set(_wsgate_links_${_c} \"${_wsgate_links_${_c}}\")\n")
  install(TARGETS wsgate_${_c} EXPORT wsgate_${_c}Targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(EXPORT wsgate_${_c}Targets NAMESPACE wsgate:: DESTINATION ${WSGATE_CMAKE_DIR})
endforeach()

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/wsgate DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/wsgateConfig.cmake.in
  ${PROJECT_BINARY_DIR}/wsgateConfig.cmake INSTALL_DESTINATION ${WSGATE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/wsgateConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/wsgateConfig.cmake ${PROJECT_BINARY_DIR}/wsgateConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/wsgate-dependencies.cmake
  DESTINATION ${WSGATE_CMAKE_DIR})
