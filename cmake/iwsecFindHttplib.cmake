# Finds the cpp-httplib a host uses, in the order a host most likely has it:
#
#   1. a target `httplib::httplib` the host already defined (add_subdirectory
#      of upstream's source, FetchContent, or its own find_package);
#   2. upstream's CMake package, find_package(httplib CONFIG) (an upstream
#      `cmake --install`, vcpkg, conan; CMAKE_PREFIX_PATH points at it);
#   3. Debian's pkg-config file `cpp-httplib` (libcpp-httplib-dev, 0.11.4 on
#      Debian 12, a compiled library whose Cflags carry CPPHTTPLIB_*_SUPPORT).
#
# iwsec_find_httplib(<result-var>) sets <result-var> to the target to link
# (httplib::httplib or PkgConfig::CPPHTTPLIB), IWSEC_HTTPLIB_VERSION and
# IWSEC_HTTPLIB_SOURCE (which of the three), and says both at configure time.
# Used by iwsec's own build and by its installed package, so a consumer of
# find_package(iwsec) gets the same cpp-httplib its host links.
include_guard(GLOBAL)

# The CPPHTTPLIB_VERSION of the httplib.h in the include directories of
# <target>; empty when it cannot be read.
function(_iwsec_httplib_header_version target out)
  set(version "")
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(dirs)
    foreach(dir IN LISTS dirs)
      # Generator expressions such as $<BUILD_INTERFACE:...> name the
      # directory a build tree uses.
      string(REGEX REPLACE "^\\$<BUILD_INTERFACE:(.*)>$" "\\1" dir "${dir}")
      if(dir MATCHES "^\\$<" OR NOT EXISTS "${dir}/httplib.h")
        continue()
      endif()
      file(STRINGS "${dir}/httplib.h" line REGEX "^#define CPPHTTPLIB_VERSION \"" LIMIT_COUNT 1)
      string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" version "${line}")
      if(version)
        break()
      endif()
    endforeach()
  endif()
  set(${out} "${version}" PARENT_SCOPE)
endfunction()

function(iwsec_find_httplib result)
  set(source "")
  set(version "")
  if(TARGET httplib::httplib)
    set(target httplib::httplib)
    set(source "the host's target httplib::httplib")
    if(DEFINED HTTPLIB_VERSION)
      set(version "${HTTPLIB_VERSION}")
    else()
      _iwsec_httplib_header_version(httplib::httplib version)
    endif()
  else()
    find_package(httplib CONFIG QUIET)
    if(httplib_FOUND AND TARGET httplib::httplib)
      set(target httplib::httplib)
      set(source "upstream's CMake package (${httplib_DIR})")
      set(version "${httplib_VERSION}")
    else()
      find_package(PkgConfig QUIET)
      if(PKG_CONFIG_FOUND)
        pkg_check_modules(CPPHTTPLIB QUIET IMPORTED_TARGET GLOBAL cpp-httplib)
      endif()
      if(NOT TARGET PkgConfig::CPPHTTPLIB)
        set(${result} "" PARENT_SCOPE)
        return()
      endif()
      set(target PkgConfig::CPPHTTPLIB)
      set(source "Debian's pkg-config file cpp-httplib.pc")
      set(version "${CPPHTTPLIB_VERSION}")
    endif()
  endif()
  if(NOT version)
    set(version "unknown")
  endif()
  if(NOT IWSEC_HTTPLIB_REPORTED STREQUAL "${source} ${version}")
    message(STATUS "iwsec: cpp-httplib ${version} from ${source}")
    set(IWSEC_HTTPLIB_REPORTED "${source} ${version}" CACHE INTERNAL "")
  endif()
  set(IWSEC_HTTPLIB_VERSION "${version}" PARENT_SCOPE)
  set(IWSEC_HTTPLIB_SOURCE "${source}" PARENT_SCOPE)
  set(${result} ${target} PARENT_SCOPE)
endfunction()
