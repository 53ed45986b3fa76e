# ctest `kernel-config`: the configuration the kernel build generated equals the shared
# interface data's for the flavour (the data tests and host builds use stands for exactly
# the kernel capvisor builds). The data is qemu-arm-virt's with one core: that build must
# match byte for byte. Another platform or core count may differ only where it says:
# `KERNEL_CONFIG_DIFFERS` (keys of the kernel's gen_config.json) and `PLATFORM_GEN_DIFFERS`
# (keys of support/platform_gen.json) in its platform.env, and, with N > 1 cores,
# MAX_NUM_NODES (which must be N) and ENABLE_SMP_SUPPORT, and the invocation labels. Every
# other key, and every other file, must still be equal.
#   cmake -DPREFIX=<built prefix> -DDATA=<interface data> -DFLAVOUR=release|debug
#         [-DPLATFORM_DIR=platforms/NAME] [-DCPUS=N] -P check-config.cmake
# Prints `skipped:` (ctest: SKIP_REGULAR_EXPRESSION) when DATA is missing, unless
# CAPVISOR_REQUIRE_KERNEL=1, which makes that a failure.
cmake_policy(VERSION 3.20)
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
if(NOT CPUS)
    set(CPUS 1)
endif()
# What this platform and core count may change.
set(kernel_differs "")
set(platform_differs "")
if(PLATFORM_DIR)
    file(STRINGS "${PLATFORM_DIR}/platform.env" lines REGEX "^(KERNEL_CONFIG|PLATFORM_GEN)_DIFFERS=")
    foreach(line ${lines})
        string(REGEX MATCH "^([A-Z_]+)=(.*)$" _ "${line}")
        separate_arguments(keys UNIX_COMMAND "${CMAKE_MATCH_2}")
        if(CMAKE_MATCH_1 STREQUAL "KERNEL_CONFIG_DIFFERS")
            list(APPEND kernel_differs ${keys})
        else()
            list(APPEND platform_differs ${keys})
        endif()
    endforeach()
endif()
if(CPUS GREATER 1)
    list(APPEND kernel_differs MAX_NUM_NODES ENABLE_SMP_SUPPORT)
endif()

# Compares two JSON objects key by key; keys in `allowed` may differ. Sets `bad` in the caller.
function(compare_json built shared allowed)
    file(READ "${built}" a)
    file(READ "${shared}" b)
    string(JSON na LENGTH "${a}")
    string(JSON nb LENGTH "${b}")
    set(problems "")
    set(differing "")
    math(EXPR last "${nb} - 1")
    foreach(i RANGE ${last})
        string(JSON key MEMBER "${b}" ${i})
        string(JSON vb GET "${b}" "${key}")
        string(JSON va ERROR_VARIABLE missing GET "${a}" "${key}")
        if(missing)
            list(APPEND problems "${key} missing")
        elseif(NOT va STREQUAL vb)
            if(key IN_LIST allowed)
                list(APPEND differing "${key}")
            else()
                list(APPEND problems "${key}: ${va} (data: ${vb})")
            endif()
        endif()
    endforeach()
    if(NOT na EQUAL nb)
        list(APPEND problems "${na} keys (data: ${nb})")
    endif()
    if(problems)
        string(REPLACE ";" "; " problems "${problems}")
        message("DIFFERS: ${built}: ${problems}")
        set(bad TRUE PARENT_SCOPE)
    else()
        string(REPLACE ";" ", " differing "${differing}")
        message("same but the platform's own keys (${differing}): ${built} ~ ${shared}")
    endif()
endfunction()

set(bad FALSE)
foreach(p ${pairs})
    string(REPLACE "|" ";" p "${p}")
    list(GET p 0 built)
    list(GET p 1 shared)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${PREFIX}/${built}" "${DATA}/${shared}" RESULT_VARIABLE r)
    if(r EQUAL 0)
        message("same: ${built} = ${DATA}/${shared}")
    elseif(built STREQUAL "libsel4/include/kernel/gen_config.json")
        compare_json("${PREFIX}/${built}" "${DATA}/${shared}" "${kernel_differs}")
    elseif(built STREQUAL "extra/invocations_all.json" AND CPUS GREATER 1)
        # SMP adds TCB_SetAffinity, which renumbers every later label; sel4-codegen's label
        # test checks the bindings against this build's own numbers.
        message("differs as SMP implies (TCB_SetAffinity renumbers the labels after it): ${built}")
    elseif(built STREQUAL "support/platform_gen.json")
        compare_json("${PREFIX}/${built}" "${DATA}/${shared}" "${platform_differs}")
    else()
        message("DIFFERS: ${PREFIX}/${built} vs ${DATA}/${shared}")
        set(bad TRUE)
    endif()
endforeach()
if(CPUS GREATER 1)
    file(READ "${PREFIX}/libsel4/include/kernel/gen_config.json" config)
    string(JSON nodes GET "${config}" MAX_NUM_NODES)
    if(NOT nodes STREQUAL "${CPUS}")
        message("DIFFERS: MAX_NUM_NODES is ${nodes}, the build asked for ${CPUS} cores")
        set(bad TRUE)
    endif()
endif()
if(bad)
    message(FATAL_ERROR "generated file(s) differ from the ${FLAVOUR} interface data beyond what the platform and core count allow")
endif()
