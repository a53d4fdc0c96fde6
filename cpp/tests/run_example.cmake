# ctest example_app: install the build tree into a scratch prefix, then configure, build and
# run cpp/examples/segment_image against it, with the model both from a path and embedded.
# Variables: BUILD_DIR EXAMPLE_DIR WORK_DIR MODEL IMAGE GENERATOR BUILD_TYPE
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  set(output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" --config "${BUILD_TYPE}")
run("${CMAKE_COMMAND}" -S "${EXAMPLE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}" "-DCMAKE_PREFIX_PATH=${prefix}" "-DEMBED_MODEL=${MODEL}")
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --config "${BUILD_TYPE}" -j 2)

file(GLOB app "${WORK_DIR}/build/segment_image" "${WORK_DIR}/build/${BUILD_TYPE}/segment_image*")
run("${app}" "${IMAGE}" "${WORK_DIR}/overlay.png" "${MODEL}")
set(from_path "${output}")
run("${app}" "${IMAGE}" "${WORK_DIR}/overlay_embedded.png")
set(from_embedded "${output}")

# The sample image is a quarter of each colour class (make_test_model.sample_image).
foreach(class background red green blue)
  if(NOT from_path MATCHES "${class} 0\\.2500")
    message(FATAL_ERROR "expected a 0.2500 share of '${class}', got:\n${from_path}")
  endif()
endforeach()
if(NOT from_path STREQUAL from_embedded)
  message(FATAL_ERROR "embedded model differs from the file:\n${from_path}\nvs\n${from_embedded}")
endif()
if(NOT EXISTS "${WORK_DIR}/overlay.png")
  message(FATAL_ERROR "no overlay written")
endif()
message(STATUS "example app OK:\n${from_path}")
