# seL4 16.0.0 settings for capvisor on QEMU `virt` (GICv2, one core, Cortex-A57, 2 GiB).
# Loaded with `cmake -C` before seL4's own configuration. The flavour (CAPVISOR_KERNEL,
# release or debug) is the only input: everything else is fixed here, and the resulting
# gen_config.json must equal ../shared/sel4/16.0.0's for that flavour byte for byte
# (capvisor/tests/kernel_config.rs). Why each value: ../shared/sel4/16.0.0/README.md.
if(NOT DEFINED CAPVISOR_KERNEL)
    set(CAPVISOR_KERNEL release)
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
set(KernelMaxNumNodes 1 CACHE STRING "")
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
