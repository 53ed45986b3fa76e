# ctest `kernel-config`: the configuration the kernel build generated equals the shared
# interface data's for the flavour, byte for byte (the data tests and host builds use stands
# for exactly the kernel capvisor builds).
#   cmake -DPREFIX=<built prefix> -DDATA=<interface data> -DFLAVOUR=release|debug -P check-config.cmake
# Prints `skipped:` (ctest: SKIP_REGULAR_EXPRESSION) when DATA is missing, unless
# CAPVISOR_REQUIRE_KERNEL=1, which makes that a failure.
if(NOT IS_DIRECTORY "${DATA}")
    if("$ENV{CAPVISOR_REQUIRE_KERNEL}" STREQUAL "1")
        message(FATAL_ERROR "cannot run: no interface data at '${DATA}' (set CAPVISOR_SEL4_DATA)")
    endif()
    message("skipped: no interface data at '${DATA}' (set CAPVISOR_SEL4_DATA)")
    return()
endif()
if(FLAVOUR STREQUAL "release")
    set(kernel_config "release/libsel4/include/kernel/gen_config.json")
else()
    set(kernel_config "libsel4/include/kernel/gen_config.json")
endif()
set(pairs
    "libsel4/include/kernel/gen_config.json|${kernel_config}"
    "libsel4/include/sel4/gen_config.json|libsel4/include/sel4/gen_config.json"
    "libsel4/include/api/syscall.xml|libsel4/include/api/syscall.xml"
    "libsel4/include/interfaces/object-api.xml|libsel4/include/interfaces/object-api.xml"
    "libsel4/include/interfaces/object-api-arch.xml|libsel4/include/interfaces/object-api-arch.xml"
    "libsel4/include/interfaces/object-api-sel4-arch.xml|libsel4/include/interfaces/object-api-sel4-arch.xml"
    "support/platform_gen.json|support/platform_gen.json"
    "extra/invocations_all.json|extra/invocations_all.json")
set(bad 0)
foreach(p ${pairs})
    string(REPLACE "|" ";" p "${p}")
    list(GET p 0 built)
    list(GET p 1 shared)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${PREFIX}/${built}" "${DATA}/${shared}" RESULT_VARIABLE r)
    if(r EQUAL 0)
        message("same: ${built} = ${DATA}/${shared}")
    else()
        message("DIFFERS: ${PREFIX}/${built} vs ${DATA}/${shared}")
        math(EXPR bad "${bad} + 1")
    endif()
endforeach()
if(bad GREATER 0)
    message(FATAL_ERROR "${bad} generated file(s) differ from the ${FLAVOUR} interface data")
endif()
