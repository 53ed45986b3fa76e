# seL4 16.0.0 settings for capvisor on QEMU `virt` (GICv2, Cortex-A57, 2 GiB).
# Loaded with `cmake -C` before seL4's own configuration. The inputs are the flavour
# (CAPVISOR_KERNEL, release or debug) and the number of cores (CAPVISOR_NUM_CPUS, default 1);
# everything else is fixed here. With one core the resulting gen_config.json must equal
# ../shared/sel4/16.0.0's for that flavour byte for byte; with more, it may differ only in
# what the core count implies (kernel/check-config.cmake). Why each value:
# ../shared/sel4/16.0.0/README.md. Other platforms include this file and change what differs.
if(NOT DEFINED CAPVISOR_KERNEL)
    set(CAPVISOR_KERNEL release)
endif()
if(NOT DEFINED CAPVISOR_NUM_CPUS)
    set(CAPVISOR_NUM_CPUS 1)
endif()

set(CROSS_COMPILER_PREFIX "aarch64-linux-gnu-" CACHE STRING "")
set(KernelArch arm CACHE STRING "")
set(KernelSel4Arch aarch64 CACHE STRING "")
set(KernelPlatform qemu-arm-virt CACHE STRING "")
set(ARM_CPU cortex-a57 CACHE STRING "")
set(QEMU_MEMORY 2048 CACHE STRING "")
set(QEMU_GIC_VERSION 2 CACHE STRING "")

set(KernelArmHypervisorSupport ON CACHE BOOL "")
set(KernelIsMCS OFF CACHE BOOL "")
set(KernelMaxNumNodes ${CAPVISOR_NUM_CPUS} CACHE STRING "")
set(KernelRootCNodeSizeBits 16 CACHE STRING "")
set(KernelArmExportPCNTUser ON CACHE BOOL "")
set(KernelArmExportVCNTUser ON CACHE BOOL "")
set(KernelArmExportPTMRUser OFF CACHE BOOL "")
set(KernelArmExportVTMRUser OFF CACHE BOOL "")
set(KernelArmVtimerUpdateVOffset OFF CACHE BOOL "")
set(KernelAllowSMCCalls OFF CACHE BOOL "")
set(KernelRetypeFanOutLimit 256 CACHE STRING "")
set(KernelVerificationBuild OFF CACHE BOOL "")

if(CAPVISOR_KERNEL STREQUAL "release")
    set(KernelDebugBuild OFF CACHE BOOL "")
    set(KernelPrinting OFF CACHE BOOL "")
elseif(CAPVISOR_KERNEL STREQUAL "debug")
    set(KernelDebugBuild ON CACHE BOOL "")
    set(KernelPrinting ON CACHE BOOL "")
else()
    message(FATAL_ERROR "CAPVISOR_KERNEL=${CAPVISOR_KERNEL}: use release or debug")
endif()
