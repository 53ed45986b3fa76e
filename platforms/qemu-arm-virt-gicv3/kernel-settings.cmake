# seL4 16.0.0 settings for capvisor on QEMU `virt` with a GICv3 (`gic-version=3`): those of
# qemu-arm-virt with the kernel's GICv3 driver (ARM_GIC_V3_SUPPORT). Everything else, and the
# inputs (CAPVISOR_KERNEL, CAPVISOR_NUM_CPUS), as there. Loaded with `cmake -C`.
include("${CMAKE_CURRENT_LIST_DIR}/../qemu-arm-virt/kernel-settings.cmake")
set(QEMU_GIC_VERSION 3 CACHE STRING "" FORCE)
