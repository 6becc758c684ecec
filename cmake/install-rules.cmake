# install() + export so that find_package(wsgate CONFIG REQUIRED) works.
include(CMakePackageConfigHelpers)

set(WSGATE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/wsgate)

install(TARGETS wsgate EXPORT wsgateTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT wsgateTargets NAMESPACE wsgate:: DESTINATION ${WSGATE_CMAKE_DIR})

# Each optional backend exports its own targets file; wsgateConfig.cmake includes those present.
get_property(_wsgate_components GLOBAL PROPERTY WSGATE_COMPONENTS)
foreach(_c IN LISTS _wsgate_components)
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
  DESTINATION ${WSGATE_CMAKE_DIR})
