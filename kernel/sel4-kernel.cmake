# The seL4 kernel as a build product: included by the top-level CMakeLists.txt.
#
# In:  SEL4_PREFIX (a user's installed kernel: this file then only checks it), else
#      SEL4_SOURCE (tarball or source tree; -D or the environment variable), else a download
#      of the pinned release into CAPVISOR_CACHE_DIR; CAPVISOR_PLATFORM, CAPVISOR_KERNEL,
#      CAPVISOR_NUM_CPUS.
# Out: CAPVISOR_SEL4_PREFIX, an installed prefix (bin/kernel.elf, libsel4/include/...,
#      support/...) that every later build step reads.
#
# The kernel is configured and built while CMake configures (about 15 s), so the prefix
# exists before any target is defined; a stamp of its inputs (source, settings, flavour)
# skips the work when nothing changed, and editing the settings file re-runs it. Every step
# says what it is doing; each sub-build's output goes to a log named on failure.

set(SEL4_VERSION 16.0.0)
set(SEL4_COMMIT 6e7c3b733d296cfd88d5fbf635c96e447a882374)
set(SEL4_URL "https://github.com/seL4/seL4/archive/refs/tags/${SEL4_VERSION}.tar.gz" CACHE STRING
    "Where the build downloads seL4 when no SEL4_SOURCE is given (a mirror; what it serves is verified all the same)")
set(SEL4_MANIFEST "${CMAKE_CURRENT_LIST_DIR}/seL4-${SEL4_VERSION}.manifest")
set(SEL4_SOURCE_TOOL "${CMAKE_CURRENT_LIST_DIR}/sel4-source.py")

# Paths a user gives are relative to the folder they ran cmake in: CMake makes -D values of
# PATH entries absolute against it; the environment variable needs the same by hand.
function(capvisor_abs_from_cwd out value)
    if(IS_ABSOLUTE "${value}")
        set(${out} "${value}" PARENT_SCOPE)
    else()
        # The cmake process's own folder (a child started without WORKING_DIRECTORY runs
        # there); $PWD is only set when a shell started cmake.
        execute_process(COMMAND pwd OUTPUT_VARIABLE cwd OUTPUT_STRIP_TRAILING_WHITESPACE)
        get_filename_component(abs "${value}" ABSOLUTE BASE_DIR "${cwd}")
        set(${out} "${abs}" PARENT_SCOPE)
    endif()
endfunction()

# Tools the kernel build runs; every missing one is reported with its install command.
function(capvisor_kernel_prerequisites out_python)
    set(missing "")
    foreach(entry
            "aarch64-linux-gnu-gcc|apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
            "ninja|apt-get install ninja-build"
            "dtc|apt-get install device-tree-compiler"
            "xmllint|apt-get install libxml2-utils"
            "qemu-system-aarch64|apt-get install qemu-system-arm ipxe-qemu (the platform asks QEMU for its device tree)"
            "python3|apt-get install python3 python3-venv")
        string(REPLACE "|" ";" parts "${entry}")
        list(GET parts 0 tool)
        list(GET parts 1 how)
        string(MAKE_C_IDENTIFIER "CAPVISOR_TOOL_${tool}" var)
        find_program(${var} ${tool})
        if(NOT ${var})
            list(APPEND missing "  ${tool} not found: ${how}")
        endif()
    endforeach()
    if(missing)
        string(REPLACE ";" "\n" lines "${missing}")
        message(FATAL_ERROR "capvisor: the seL4 kernel build needs tools that are missing:\n${lines}\n"
                            "(or pass -DSEL4_PREFIX=<installed kernel>, or use docker/run, whose image has them all)")
    endif()

    # The kernel's generators need PyPI's sel4-deps. A python3 that has them is used as it
    # is; else a venv in the cache gets them (once, from PyPI).
    set(modules "jinja2, ply, yaml, jsonschema, pyfdt, lxml")
    set(python "${CAPVISOR_TOOL_python3}")
    if(DEFINED ENV{CAPVISOR_SEL4_PYTHON})
        set(python "$ENV{CAPVISOR_SEL4_PYTHON}")
    endif()
    execute_process(COMMAND "${python}" -c "import ${modules}" RESULT_VARIABLE r OUTPUT_QUIET ERROR_QUIET)
    if(NOT r EQUAL 0)
        set(venv "${CAPVISOR_CACHE_DIR}/sel4-deps-venv")
        set(python "${venv}/bin/python3")
        execute_process(COMMAND "${python}" -c "import ${modules}" RESULT_VARIABLE r OUTPUT_QUIET ERROR_QUIET)
        if(NOT r EQUAL 0)
            message(STATUS "capvisor: setting up a Python venv with PyPI's sel4-deps (the kernel's build tools) in ${venv}")
            execute_process(COMMAND "${CAPVISOR_TOOL_python3}" -m venv "${venv}" RESULT_VARIABLE r ERROR_VARIABLE err)
            if(NOT r EQUAL 0)
                message(FATAL_ERROR "capvisor: python3 -m venv ${venv} failed: apt-get install python3-venv\n${err}")
            endif()
            execute_process(COMMAND "${python}" -m pip install --quiet --disable-pip-version-check sel4-deps
                            RESULT_VARIABLE r ERROR_VARIABLE err)
            if(NOT r EQUAL 0)
                message(FATAL_ERROR "capvisor: pip install sel4-deps into ${venv} failed (needs PyPI): ${err}")
            endif()
        endif()
    endif()
    set(${out_python} "${python}" PARENT_SCOPE)
endfunction()

# The verified source tree for the build, in ${CMAKE_BINARY_DIR}/sel4/src (archives are
# unpacked there; a tree given as a folder is verified and used in place).
function(capvisor_sel4_source out_tree)
    set(src "${SEL4_SOURCE}")
    if(NOT src AND DEFINED ENV{SEL4_SOURCE} AND NOT "$ENV{SEL4_SOURCE}" STREQUAL "")
        capvisor_abs_from_cwd(src "$ENV{SEL4_SOURCE}")
    endif()
    set(from_cache FALSE)
    if(NOT src)
        set(from_cache TRUE)
        set(src "${CAPVISOR_CACHE_DIR}/seL4-${SEL4_VERSION}.tar.gz")
        if(NOT EXISTS "${src}")
            message(STATUS "capvisor: no SEL4_SOURCE: downloading seL4 ${SEL4_VERSION} into ${src} (pass -DSEL4_SOURCE=PATH to use a copy you have)")
            file(DOWNLOAD "${SEL4_URL}" "${src}.part" SHOW_PROGRESS STATUS st TLS_VERIFY ON)
            list(GET st 0 code)
            if(NOT code EQUAL 0)
                file(REMOVE "${src}.part")
                message(FATAL_ERROR "capvisor: downloading ${SEL4_URL} failed: ${st}; pass -DSEL4_SOURCE=<seL4 ${SEL4_VERSION} tarball or source tree>")
            endif()
            file(RENAME "${src}.part" "${src}")
        endif()
    endif()
    if(NOT EXISTS "${src}")
        message(FATAL_ERROR "capvisor: SEL4_SOURCE=${src} does not exist (give a seL4 ${SEL4_VERSION} tarball or source tree)")
    endif()

    set(tree "${src}")
    if(NOT IS_DIRECTORY "${src}")
        set(tree "${CMAKE_BINARY_DIR}/sel4/src")
        file(SHA256 "${src}" archive_sha)
        set(unpacked_stamp "${CMAKE_BINARY_DIR}/sel4/src.archive")
        set(prev "")
        if(EXISTS "${unpacked_stamp}")
            file(READ "${unpacked_stamp}" prev)
        endif()
        if(NOT prev STREQUAL "${archive_sha}" OR NOT IS_DIRECTORY "${tree}")
            message(STATUS "capvisor: unpacking ${src}")
            execute_process(COMMAND "${CAPVISOR_TOOL_python3}" "${SEL4_SOURCE_TOOL}" unpack "${src}" "${tree}"
                            RESULT_VARIABLE r ERROR_VARIABLE err)
            if(NOT r EQUAL 0)
                string(REGEX REPLACE "^error: " "" err "${err}")
                message(FATAL_ERROR "capvisor: SEL4_SOURCE=${src}: ${err}")
            endif()
            file(WRITE "${unpacked_stamp}" "${archive_sha}")
        endif()
    endif()
    message(STATUS "capvisor: verifying the seL4 source against ${SEL4_MANIFEST}")
    execute_process(COMMAND "${CAPVISOR_TOOL_python3}" "${SEL4_SOURCE_TOOL}" verify "${SEL4_MANIFEST}" "${tree}"
                    RESULT_VARIABLE r ERROR_VARIABLE err)
    if(NOT r EQUAL 0)
        string(STRIP "${err}" err)
        string(REGEX REPLACE "^error: " "" err "${err}")
        if(from_cache)
            # A download that is not the release must not be used again: the next configure
            # downloads afresh.
            file(REMOVE "${src}" "${CMAKE_BINARY_DIR}/sel4/src.archive")
            set(err "${err} (the download was removed from the cache)")
        endif()
        message(FATAL_ERROR "capvisor: SEL4_SOURCE=${src} is not seL4 ${SEL4_VERSION} (tag ${SEL4_VERSION}, commit ${SEL4_COMMIT}): ${err}")
    endif()
    set(${out_tree} "${tree}" PARENT_SCOPE)
endfunction()

# Configures, builds and installs the kernel with the platform's settings and the flavour.
function(capvisor_build_kernel tree python prefix)
    set(settings "${CAPVISOR_PLATFORM_DIR}/kernel-settings.cmake")
    set(kbuild "${CMAKE_BINARY_DIR}/sel4/${CAPVISOR_KERNEL}/build")
    set(stamp "${CMAKE_BINARY_DIR}/sel4/${CAPVISOR_KERNEL}/inputs")
    # A platform's settings may include another's: every platform's settings are inputs.
    file(GLOB all_settings "${CMAKE_SOURCE_DIR}/platforms/*/kernel-settings.cmake")
    list(SORT all_settings)
    set(settings_sha "")
    foreach(f ${all_settings})
        file(SHA256 "${f}" sha)
        string(APPEND settings_sha " ${sha}")
    endforeach()
    file(SHA256 "${SEL4_MANIFEST}" manifest_sha)
    set(inputs "source ${manifest_sha}\nsettings${settings_sha}\nflavour ${CAPVISOR_KERNEL}\nplatform ${CAPVISOR_PLATFORM}\ncpus ${CAPVISOR_NUM_CPUS}\n")
    set(prev "")
    if(EXISTS "${stamp}")
        file(READ "${stamp}" prev)
    endif()
    if(prev STREQUAL inputs AND EXISTS "${prefix}/bin/kernel.elf")
        message(STATUS "capvisor: seL4 ${SEL4_VERSION} (${CAPVISOR_KERNEL}) is up to date in ${prefix}")
        return()
    endif()
    file(REMOVE_RECURSE "${kbuild}" "${prefix}" "${stamp}")
    file(MAKE_DIRECTORY "${kbuild}")
    get_filename_component(pydir "${python}" DIRECTORY)
    set(env ${CMAKE_COMMAND} -E env "PATH=${pydir}:$ENV{PATH}")

    message(STATUS "capvisor: configuring seL4 ${SEL4_VERSION} for ${CAPVISOR_PLATFORM}, ${CAPVISOR_NUM_CPUS} core(s) (${CAPVISOR_KERNEL}); log: ${kbuild}/configure.log")
    execute_process(
        COMMAND ${env} "${CMAKE_COMMAND}" -G Ninja
                "-DCMAKE_MAKE_PROGRAM=${CAPVISOR_TOOL_ninja}"
                "-DCMAKE_TOOLCHAIN_FILE=${tree}/gcc.cmake"
                "-DCMAKE_INSTALL_PREFIX=${prefix}"
                "-DCAPVISOR_KERNEL=${CAPVISOR_KERNEL}"
                "-DCAPVISOR_NUM_CPUS=${CAPVISOR_NUM_CPUS}"
                -C "${settings}"
                -S "${tree}" -B "${kbuild}"
        OUTPUT_FILE "${kbuild}/configure.log" ERROR_FILE "${kbuild}/configure.log"
        RESULT_VARIABLE r)
    if(NOT r EQUAL 0)
        file(READ "${kbuild}/configure.log" log)
        message(FATAL_ERROR "capvisor: configuring seL4 failed; the end of ${kbuild}/configure.log:\n${log}")
    endif()
    message(STATUS "capvisor: building seL4 (about 15 s on two cores); log: ${kbuild}/build.log")
    execute_process(
        COMMAND ${env} "${CAPVISOR_TOOL_ninja}" -C "${kbuild}" install
        OUTPUT_FILE "${kbuild}/build.log" ERROR_FILE "${kbuild}/build.log"
        RESULT_VARIABLE r)
    if(NOT r EQUAL 0)
        file(STRINGS "${kbuild}/build.log" log)
        list(LENGTH log n)
        if(n GREATER 40)
            math(EXPR first "${n} - 40")
            list(SUBLIST log ${first} 40 log)
        endif()
        string(REPLACE ";" "\n" log "${log}")
        message(FATAL_ERROR "capvisor: building seL4 failed; the end of ${kbuild}/build.log:\n${log}")
    endif()
    # Not part of an install prefix, but what the interface data's extra/ holds: the label
    # numbers the kernel build generated, which sel4-codegen's tests check against.
    file(COPY "${kbuild}/generated/invocations_all.json" DESTINATION "${prefix}/extra")
    # Which platform and core count this prefix was built for: the kernel suites and
    # benchmarks boot it with the matching QEMU machine (qemu/run-qemu.sh --platform --cpus).
    file(WRITE "${prefix}/capvisor-platform" "${CAPVISOR_PLATFORM} ${CAPVISOR_NUM_CPUS}\n")
    file(WRITE "${stamp}" "${inputs}")
    message(STATUS "capvisor: seL4 ${SEL4_VERSION} (${CAPVISOR_KERNEL}) installed in ${prefix}")
endfunction()

# The files every prefix must have (the same list sel4-codegen and `capvisor image` check).
function(capvisor_check_prefix prefix what)
    foreach(f bin/kernel.elf libsel4/include/kernel/gen_config.json libsel4/include/sel4/gen_config.json
              libsel4/include/api/syscall.xml libsel4/include/interfaces/object-api.xml support/platform_gen.json)
        if(NOT EXISTS "${prefix}/${f}")
            message(FATAL_ERROR "capvisor: ${what}=${prefix} has no ${f}: it must be an installed seL4 ${SEL4_VERSION} kernel "
                                "(bin/kernel.elf, libsel4/include/..., support/platform_gen.json)")
        endif()
    endforeach()
endfunction()

if(SEL4_PREFIX)
    message(STATUS "capvisor: using the installed kernel SEL4_PREFIX=${SEL4_PREFIX} (no kernel build)")
    capvisor_check_prefix("${SEL4_PREFIX}" SEL4_PREFIX)
    set(CAPVISOR_SEL4_PREFIX "${SEL4_PREFIX}")
else()
    capvisor_kernel_prerequisites(sel4_python)
    capvisor_sel4_source(sel4_tree)
    set(CAPVISOR_SEL4_PREFIX "${CMAKE_BINARY_DIR}/sel4/${CAPVISOR_KERNEL}/prefix")
    capvisor_build_kernel("${sel4_tree}" "${sel4_python}" "${CAPVISOR_SEL4_PREFIX}")
    capvisor_check_prefix("${CAPVISOR_SEL4_PREFIX}" "the kernel build's prefix")
    file(GLOB all_settings "${CMAKE_SOURCE_DIR}/platforms/*/kernel-settings.cmake")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${all_settings} "${SEL4_MANIFEST}")
endif()
