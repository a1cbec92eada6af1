# Install rules: headers (both layouts), the CMake package and a pkg-config
# file. Included from the top-level CMakeLists.txt when IWSEC_INSTALL is ON.
#
#   <prefix>/include/iwsec/**.hpp                  the headers, #include <iwsec/iwsec.hpp>
#   <prefix>/include/iwsec/single/iwsec.hpp        the amalgamation, #include <iwsec/single/iwsec.hpp>
#   <prefix>/lib/cmake/iwsec/iwsecConfig.cmake     find_package(iwsec) -> iwsec::iwsec
#   <prefix>/lib/cmake/iwsec/iwsecFindHttplib.cmake  finds the host's cpp-httplib
#   <prefix>/share/pkgconfig/iwsec.pc              pkg-config --cflags --libs iwsec
#   <prefix>/bin/iwsec-server, iwsec-admin         when the examples are built
#   <prefix>/share/doc/iwsec/LICENSE               the MIT licence
include(CMakePackageConfigHelpers)

# iwsec is header-only and architecture-independent, so its package files do
# not go under a multiarch libdir.
set(IWSEC_INSTALL_CMAKEDIR "lib/cmake/iwsec" CACHE STRING
    "Where iwsecConfig.cmake goes, relative to the install prefix")
set(IWSEC_INSTALL_PKGCONFIGDIR "share/pkgconfig" CACHE STRING
    "Where iwsec.pc goes, relative to the install prefix")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/iwsec"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.hpp")
install(FILES "${PROJECT_SOURCE_DIR}/single_include/iwsec/iwsec.hpp"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/iwsec/single")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/iwsec")

install(TARGETS iwsec EXPORT iwsecTargets)
install(EXPORT iwsecTargets
        NAMESPACE iwsec::
        FILE iwsecTargets.cmake
        DESTINATION "${IWSEC_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/iwsecConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/iwsecConfig.cmake"
  INSTALL_DESTINATION "${IWSEC_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/iwsecConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/iwsecConfig.cmake"
              "${PROJECT_BINARY_DIR}/iwsecConfigVersion.cmake"
              "${PROJECT_SOURCE_DIR}/cmake/iwsecFindHttplib.cmake"
        DESTINATION "${IWSEC_INSTALL_CMAKEDIR}")

# The .pc file finds its prefix from its own location, so it stays right
# whatever prefix `cmake --install --prefix` is given.
file(RELATIVE_PATH IWSEC_PC_TO_PREFIX "/prefix/${IWSEC_INSTALL_PKGCONFIGDIR}" "/prefix")
string(REGEX REPLACE "/$" "" IWSEC_PC_TO_PREFIX "${IWSEC_PC_TO_PREFIX}")
set(IWSEC_PC_PICOJSON_CFLAGS "")
if(NOT PICOJSON_INCLUDE_DIR IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
  set(IWSEC_PC_PICOJSON_CFLAGS " -I${PICOJSON_INCLUDE_DIR}")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/iwsec.pc.in" "${PROJECT_BINARY_DIR}/iwsec.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/iwsec.pc" DESTINATION "${IWSEC_INSTALL_PKGCONFIGDIR}")
# Cluster mode: iwsec plus libpq (pkg-config --cflags --libs iwsec-postgres).
configure_file("${PROJECT_SOURCE_DIR}/cmake/iwsec-postgres.pc.in" "${PROJECT_BINARY_DIR}/iwsec-postgres.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/iwsec-postgres.pc" DESTINATION "${IWSEC_INSTALL_PKGCONFIGDIR}")

if(IWSEC_BUILD_EXAMPLES)
  install(TARGETS iwsec-server iwsec-admin RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
endif()
