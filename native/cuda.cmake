# CUDA backend (native/src/cuda), included by the root CMakeLists.txt after umbra_core exists.
# On by default when nvcc is found. The CUDA runtime is linked statically so the addon loads on
# machines without a GPU, driver or toolkit and reports "no CUDA device" there at run time.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(UMBRA_CUDA_DEFAULT ON)
else()
  set(UMBRA_CUDA_DEFAULT OFF)
endif()
option(UMBRA_WITH_CUDA "Build the CUDA kernels (needs nvcc)" ${UMBRA_CUDA_DEFAULT})

if(UMBRA_WITH_CUDA)
  # Ampere and Hopper machine code plus Hopper PTX for later GPUs; nothing more, because CI
  # builds this on every npm install and each architecture is another full device pass.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
  endif()
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)

  file(GLOB UMBRA_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/src/cuda/*.cu)
  add_library(umbra_cuda STATIC ${UMBRA_CUDA_SOURCES})
  set_target_properties(umbra_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
  target_include_directories(umbra_cuda PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src/cuda ${CUDAToolkit_INCLUDE_DIRS}
                                        PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include ${CMAKE_CURRENT_LIST_DIR}/src)
  target_compile_options(umbra_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr -Xcompiler=-fPIC>)
  # dlopen: cuBLASLt is loaded at run time where present (src/cuda/cublaslt.cu), never linked.
  target_link_libraries(umbra_cuda PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})

  # backends_compiled() and the binding read this; the addon links umbra_core, so CUDA comes along.
  target_compile_definitions(umbra_core PUBLIC UMBRA_WITH_CUDA)
  target_link_libraries(umbra_core PUBLIC umbra_cuda)

  # Standalone GPU checks and benchmark (no Node.js): see bench/RESULTS-gpu.md.
  if(UMBRA_BUILD_TESTS OR UMBRA_BUILD_CUDA_TESTS)
    add_executable(umbra_cuda_tests ${CMAKE_CURRENT_LIST_DIR}/tests/cuda/cuda_kernel_tests.cc)
    target_link_libraries(umbra_cuda_tests PRIVATE umbra_cuda)
    target_include_directories(umbra_cuda_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include ${CMAKE_CURRENT_LIST_DIR}/src)
    add_executable(umbra_cuda_bench ${CMAKE_CURRENT_LIST_DIR}/tests/cuda/cuda_bench.cc)
    target_link_libraries(umbra_cuda_bench PRIVATE umbra_cuda)
    target_include_directories(umbra_cuda_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include ${CMAKE_CURRENT_LIST_DIR}/src)
    # Device-resident layer chains and CUDA graphs (plan.cuh, cuda_graph.cuh): tests and benchmark.
    add_executable(umbra_cuda_plan_tests ${CMAKE_CURRENT_LIST_DIR}/tests/cuda/cuda_plan_tests.cc)
    target_link_libraries(umbra_cuda_plan_tests PRIVATE umbra_cuda)
    target_include_directories(umbra_cuda_plan_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include ${CMAKE_CURRENT_LIST_DIR}/src)
    add_executable(umbra_cuda_plan_bench ${CMAKE_CURRENT_LIST_DIR}/tests/cuda/cuda_plan_bench.cc)
    target_link_libraries(umbra_cuda_plan_bench PRIVATE umbra_cuda)
    target_include_directories(umbra_cuda_plan_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include ${CMAKE_CURRENT_LIST_DIR}/src)
  endif()
endif()
