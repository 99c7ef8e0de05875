# Install rules: headers, the static library `capheap` (exported as capheap::capheap), the CMake package
# (capheapConfig.cmake + capheapConfigVersion.cmake) and a pkg-config file.
#
#   cmake --install build --prefix /opt/capheap
#   find_package(capheap CONFIG REQUIRED)  ->  target_link_libraries(app PRIVATE capheap::capheap)
#   pkg-config --cflags --libs capheap     ->  -I<prefix>/include -L<prefix>/lib -lcapheap -lpthread
#
# Off by default when capheap is a subproject (add_subdirectory); CAPHEAP_INSTALL=ON forces it.
if(CMAKE_SOURCE_DIR STREQUAL PROJECT_SOURCE_DIR)
  set(_capheap_install_default ON)
else()
  set(_capheap_install_default OFF)
endif()
option(CAPHEAP_INSTALL "Generate capheap's install rules" ${_capheap_install_default})
if(NOT CAPHEAP_INSTALL)
  return()
endif()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CAPHEAP_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/capheap" CACHE STRING
    "Where capheapConfig.cmake is installed (relative to the prefix)")
mark_as_advanced(CAPHEAP_INSTALL_CMAKEDIR)

# ---- Headers: every public C header and the C++ headers under capheap/ ------------------------------
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT capheap_development
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")

# ---- Library + exported target --------------------------------------------------------------------
# capheap::capheap (engine, caps layer, C API), capheap::host (the host simulator with the bundled
# chip layouts compiled in; links capheap_sim) and capheap::malloc (libc routing).
set(_capheap_install_targets capheap)
foreach(_t capheap_sim capheap_host capheap_malloc capheap_layout_table)
  if(TARGET ${_t})
    list(APPEND _capheap_install_targets ${_t})
  endif()
endforeach()
if(TARGET capheap_host)
  set_target_properties(capheap_host PROPERTIES EXPORT_NAME host)
  set_target_properties(capheap_sim PROPERTIES EXPORT_NAME sim)
endif()
if(TARGET capheap_malloc)
  set_target_properties(capheap_malloc PROPERTIES EXPORT_NAME malloc)
endif()
install(TARGETS ${_capheap_install_targets}
        EXPORT capheapTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT capheap_development
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT capheap_runtime
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT capheap_runtime
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT capheapTargets
        NAMESPACE capheap::
        FILE capheapTargets.cmake
        DESTINATION "${CAPHEAP_INSTALL_CMAKEDIR}"
        COMPONENT capheap_development)

# ---- CMake package ------------------------------------------------------------------------------------
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/capheapConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/capheapConfig.cmake"
  INSTALL_DESTINATION "${CAPHEAP_INSTALL_CMAKEDIR}")
# 0.x releases are only compatible within the same minor version.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/capheapConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/capheapConfig.cmake" "${PROJECT_BINARY_DIR}/capheapConfigVersion.cmake"
        DESTINATION "${CAPHEAP_INSTALL_CMAKEDIR}"
        COMPONENT capheap_development)

# ---- pkg-config -----------------------------------------------------------------------------------------
# Generated at install time so that the paths follow `cmake --install --prefix` (CMAKE_INSTALL_PREFIX is
# re-evaluated then; DESTDIR is not part of it, as it should not be).
set(_capheap_pc_in "${CMAKE_CURRENT_LIST_DIR}/capheap.pc.in")
set(_capheap_pc_out "${PROJECT_BINARY_DIR}/pkgconfig/capheap.pc")
install(CODE "
  set(CAPHEAP_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  foreach(_kind LIBDIR INCLUDEDIR)
    if(_kind STREQUAL \"LIBDIR\")
      set(_dir \"${CMAKE_INSTALL_LIBDIR}\")
    else()
      set(_dir \"${CMAKE_INSTALL_INCLUDEDIR}\")
    endif()
    if(IS_ABSOLUTE \"\${_dir}\")
      set(CAPHEAP_PC_\${_kind} \"\${_dir}\")
    else()
      set(CAPHEAP_PC_\${_kind} \"\\\${prefix}/\${_dir}\")
    endif()
  endforeach()
  set(CAPHEAP_PC_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${_capheap_pc_in}\" \"${_capheap_pc_out}\" @ONLY)
" COMPONENT capheap_development)
install(FILES "${_capheap_pc_out}"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
        COMPONENT capheap_development)
