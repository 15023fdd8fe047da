# The layering rule, checked: runtime and model I/O at the bottom; kernels, oracles and layouts
# above them; the CLI on top. Each layer folder names the folders its files may include (its own
# and those below it); an include of any other layer folder fails, naming file, line and include.
#
# Runs at configure time (the top-level CMakeLists.txt calls lb_check_layers) and as the ctest
# layers_include_rule:  cmake -DLB_ROOT=<source tree> -P cmake/check_layers.cmake
# harness/cli is the top and may include anything, so it is not checked; tests/ is not a layer.
cmake_policy(VERSION 3.18)  # IN_LIST, and empty list elements kept (script mode has no project policies)

set(LB_LAYERS harness/runtime harness/model harness/bench kernels datasets reports oracles layouts harness/cli)
set(lb_may_include_harness/runtime harness/runtime)
set(lb_may_include_harness/model harness/runtime harness/model)
set(lb_may_include_harness/bench harness/runtime harness/bench)
set(lb_may_include_kernels harness/runtime harness/model kernels)
set(lb_may_include_datasets harness/runtime datasets)
set(lb_may_include_reports harness/runtime reports)
set(lb_may_include_oracles harness/runtime harness/model kernels oracles)
set(lb_may_include_layouts harness/runtime harness/model kernels oracles datasets layouts)

# The layer folder an include path names, or "" for one outside the layers (a system or
# third-party header, or a path relative to the including file).
function(lb_layer_of path out)
  set(layer "")
  foreach(candidate IN LISTS LB_LAYERS)
    string(FIND "${path}" "${candidate}/" at)
    if(at EQUAL 0)
      set(layer ${candidate})
    endif()
  endforeach()
  set(${out} "${layer}" PARENT_SCOPE)
endfunction()

# Appends "file:line: #include ..." to `violations_var` for each include in `file` (relative to
# `root`, in layer `layer`) that the layer may not make.
function(lb_check_file root file layer violations_var)
  file(READ "${root}/${file}" text)
  # One list element per line: characters that CMake lists treat specially go first, so that
  # the element index stays the line number.
  string(REPLACE ";" "" text "${text}")
  string(REPLACE "[" "" text "${text}")
  string(REPLACE "]" "" text "${text}")
  string(REPLACE "\\" "" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(violations ${${violations_var}})
  set(line_number 0)
  foreach(line IN LISTS lines)
    math(EXPR line_number "${line_number} + 1")
    if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"]")
      continue()
    endif()
    set(path "${CMAKE_MATCH_1}")
    if(path MATCHES "^\\.\\./")
      list(APPEND violations "${file}:${line_number}: #include \"${path}\" (name project headers from the root)")
      continue()
    endif()
    lb_layer_of("${path}" included_layer)
    if(included_layer AND NOT included_layer IN_LIST lb_may_include_${layer})
      list(APPEND violations "${file}:${line_number}: #include \"${path}\" (${layer} may include only: ${lb_may_include_${layer}})")
    endif()
  endforeach()
  set(${violations_var} "${violations}" PARENT_SCOPE)
endfunction()

# Fails (FATAL_ERROR) listing every include in `root` that goes up the layers.
function(lb_check_layers root)
  set(violations "")
  foreach(layer IN LISTS LB_LAYERS)
    if(NOT DEFINED lb_may_include_${layer})
      continue()  # the top: may include anything
    endif()
    file(GLOB_RECURSE files RELATIVE "${root}" "${root}/${layer}/*.h" "${root}/${layer}/*.cpp"
         "${root}/${layer}/*.cuh" "${root}/${layer}/*.cu")
    list(SORT files)
    foreach(file IN LISTS files)
      lb_check_file("${root}" "${file}" ${layer} violations)
    endforeach()
  endforeach()
  if(violations)
    list(JOIN violations "\n  " listed)
    message(FATAL_ERROR "layoutbench layers: includes that go up a layer (cmake/check_layers.cmake):\n  ${listed}")
  endif()
endfunction()

# The targets follow the same order: each layer's library links only libraries of the layers it
# may include. Called after every target is defined.
function(lb_check_layer_links)
  set(violations "")
  foreach(layer IN LISTS LB_LAYERS)
    if(NOT DEFINED lb_may_include_${layer})
      continue()
    endif()
    get_filename_component(name "${layer}" NAME)
    set(allowed_targets "")
    foreach(allowed IN LISTS lb_may_include_${layer})
      get_filename_component(allowed_name "${allowed}" NAME)
      list(APPEND allowed_targets lb_${allowed_name})
    endforeach()
    get_target_property(links lb_${name} LINK_LIBRARIES)
    foreach(link IN LISTS links)
      if(link MATCHES "^lb_" AND NOT link IN_LIST allowed_targets)
        list(APPEND violations "lb_${name} links ${link} (${layer} may use only: ${allowed_targets})")
      endif()
    endforeach()
  endforeach()
  if(violations)
    list(JOIN violations "\n  " listed)
    message(FATAL_ERROR "layoutbench layers: target links that go up a layer (cmake/check_layers.cmake):\n  ${listed}")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT LB_ROOT)
    message(FATAL_ERROR "usage: cmake -DLB_ROOT=<source tree> -P cmake/check_layers.cmake")
  endif()
  lb_check_layers("${LB_ROOT}")
  message(STATUS "layoutbench layers: no include goes up a layer")
endif()
