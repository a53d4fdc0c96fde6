# Locate LibTorch from a Python environment's torch wheel, and tidy up its imported targets.
#
#   emaseg_find_torch(REQUIRED)  -> target `torch`, variables Torch_VERSION, EMASEG_CXX_STANDARD
#
# An explicit Torch_DIR (or a CMAKE_PREFIX_PATH holding a LibTorch) wins; otherwise the
# interpreter EMASEG_PYTHON is asked for torch.utils.cmake_prefix_path. EMASEG_PYTHON defaults to
# Python3_EXECUTABLE, then <source>/.venv/bin/python, then python3 on PATH.
include_guard(GLOBAL)

function(_emaseg_torch_hints out_var)  # ARGN: extra hint folders
  if(NOT EMASEG_PYTHON)
    if(Python3_EXECUTABLE)
      set(_python "${Python3_EXECUTABLE}")
    elseif(EXISTS "${PROJECT_SOURCE_DIR}/.venv/bin/python")
      set(_python "${PROJECT_SOURCE_DIR}/.venv/bin/python")
    else()
      find_program(_python NAMES python3 python)
    endif()
    set(EMASEG_PYTHON "${_python}" CACHE FILEPATH "Python interpreter whose torch provides LibTorch")
  endif()
  set(_hints "")
  if(EMASEG_PYTHON)
    execute_process(
      COMMAND "${EMASEG_PYTHON}" -c "import torch, torch.utils; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _prefix OUTPUT_STRIP_TRAILING_WHITESPACE
      ERROR_VARIABLE _error RESULT_VARIABLE _rc)
    if(_rc EQUAL 0 AND EXISTS "${_prefix}")
      list(APPEND _hints "${_prefix}/Torch")
    else()
      message(STATUS "emaseg: ${EMASEG_PYTHON} cannot import torch; looking for LibTorch via "
                     "Torch_DIR, CMAKE_PREFIX_PATH and the build's LibTorch")
    endif()
  endif()
  list(APPEND _hints ${ARGN})
  # Torch wheels link kineto into libtorch_cpu, yet TorchConfig looks for a separate libkineto
  # and warns "library kineto not found"; pointing it at libtorch_cpu quiets that (the
  # variable only feeds TORCH_LIBRARIES, which the targets do not use).
  set(_lib_dirs "")
  foreach(_hint IN LISTS _hints)
    list(APPEND _lib_dirs "${_hint}/../../../lib")  # <torch>/share/cmake/Torch -> <torch>/lib
  endforeach()
  if(_lib_dirs)
    find_library(kineto_LIBRARY NAMES kineto torch_cpu PATHS ${_lib_dirs} NO_DEFAULT_PATH)
  endif()
  set(${out_var} ${_hints} PARENT_SCOPE)
endfunction()

# Torch's CMake package leaves a few traps for consumers; fix them once it is found.
function(_emaseg_fix_torch_targets)
  # caffe2::mkl adds ${MKL_ROOT}/lib/intel64 & co as link directories; with MKL_ROOT empty
  # they become /lib/intel64 and friends, which do not exist and upset some linkers.
  if(TARGET caffe2::mkl)
    set_property(TARGET caffe2::mkl PROPERTY INTERFACE_LINK_DIRECTORIES "")
  endif()
endfunction()

# Sets EMASEG_CXX_STANDARD: headers of torch >= 2.14 need C++20, older ones C++17.
function(_emaseg_cxx_standard)
  if(Torch_VERSION AND Torch_VERSION VERSION_GREATER_EQUAL 2.14)
    set(EMASEG_CXX_STANDARD 20 PARENT_SCOPE)
  else()
    set(EMASEG_CXX_STANDARD 17 PARENT_SCOPE)
  endif()
endfunction()

# find_package(Torch) with the hints above; ARGN goes to find_package (REQUIRED, QUIET).
# The installed emasegConfig.cmake does the same through find_dependency().
macro(emaseg_find_torch)
  if(NOT TARGET torch)
    _emaseg_torch_hints(_emaseg_torch_hints)
    find_package(Torch CONFIG ${ARGN} HINTS ${_emaseg_torch_hints})
  endif()
  _emaseg_fix_torch_targets()
  _emaseg_cxx_standard()
endmacro()
