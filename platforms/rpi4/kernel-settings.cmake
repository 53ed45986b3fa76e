# seL4 16.0.0 settings for capvisor on the Raspberry Pi 4 Model B (seL4 platform bcm2711:
# BCM2711, Cortex-A72, GIC-400 with the virtualization extensions, 54 MHz generic timer).
# Loaded with `cmake -C`. capvisor's own settings (hypervisor support, non-MCS, CNode size,
# timer exports, flavour, cores: CAPVISOR_KERNEL, CAPVISOR_NUM_CPUS) are qemu-arm-virt's;
# this file changes only the platform.
include("${CMAKE_CURRENT_LIST_DIR}/../qemu-arm-virt/kernel-settings.cmake")
set(KernelPlatform bcm2711 CACHE STRING "" FORCE)
# RAM the kernel may use, in MiB (seL4 knows 1024, 2048, 4096, 8192; its default is 8192).
# 2048 is QEMU raspi4b's RAM and the 2 GB board's; a 4 or 8 GB board runs it too, with the
# rest unused (raise it for that board: the overlay is seL4's src/plat/bcm2711/overlay-rpi4-*gb.dts).
set(RPI4_MEMORY 2048 CACHE STRING "")
# qemu-arm-virt's machine settings mean nothing to bcm2711 (its CPU is the platform's).
unset(ARM_CPU CACHE)
unset(QEMU_MEMORY CACHE)
unset(QEMU_GIC_VERSION CACHE)
