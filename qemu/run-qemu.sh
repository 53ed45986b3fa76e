#!/usr/bin/env bash
# Boots a capvisor image (the ELF from `capvisor image`) under QEMU: the one QEMU command
# line of the project, used by `ninja simulate` and by the boot test.
#
#   qemu/run-qemu.sh [--timeout SECS] [--memory MiB] [--raw ADDR] IMAGE [-- EXTRA QEMU ARGS...]
#
# IMAGE is the ELF, given to QEMU's -kernel (QEMU places every segment and its DTB at the
# base of RAM). With --raw, IMAGE is the flat binary (`capvisor image`'s OUT.bin), loaded
# at ADDR and entered there as U-Boot's `go` would; QEMU then places no DTB, so the image
# needs one packed (`capvisor image --dtb`).
#
# The machine is QEMU virt with EL2 (virtualization=on), GICv2, one Cortex-A57, at least
# 2048 MiB (the kernel's platform memory runs to 0xc0000000), console on stdio without
# signals (Ctrl-C and Ctrl-A reach the guest and capvisor's console keys, not QEMU; end a run
# with Ctrl-A x), and semihosting open to EL0 so the root task can end QEMU with its status.
#
# Exit status: the root task's (0 all self-tests passed), 124 on timeout, 2 on bad usage.
set -euo pipefail

usage() {
    echo "usage: $0 [--timeout SECS] [--memory MiB] [--raw ADDR] IMAGE [-- EXTRA QEMU ARGS...]" >&2
    exit 2
}

timeout_s=0
memory=2048
raw=""
image=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
        --memory) [ $# -ge 2 ] || usage; memory="$2"; shift 2 ;;
        --raw) [ $# -ge 2 ] || usage; raw="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) usage ;;
        -*) echo "run-qemu: unknown option $1" >&2; usage ;;
        *) [ -z "$image" ] || usage; image="$1"; shift ;;
    esac
done
[ -n "$image" ] || usage
[ -f "$image" ] || { echo "run-qemu: $image: no such file (build it: ninja -C build, or capvisor image)" >&2; exit 2; }
case "$timeout_s" in ''|*[!0-9]*) echo "run-qemu: --timeout wants whole seconds, got $timeout_s" >&2; exit 2 ;; esac
case "$memory" in ''|*[!0-9]*) echo "run-qemu: --memory wants MiB, got $memory" >&2; exit 2 ;; esac
if [ "$memory" -lt 2048 ]; then
    echo "run-qemu: --memory $memory: the kernel's platform memory ends at 0xc0000000, QEMU needs at least 2048 MiB" >&2
    exit 2
fi
qemu="${QEMU:-qemu-system-aarch64}"
command -v "$qemu" >/dev/null || { echo "run-qemu: $qemu not found (Debian: apt-get install qemu-system-arm)" >&2; exit 2; }

if [ -n "$raw" ]; then
    case "$raw" in 0x[0-9a-fA-F]*) ;; *) echo "run-qemu: --raw wants a hex address, got $raw" >&2; exit 2 ;; esac
    boot=(-device "loader,file=$image,addr=$raw,force-raw=on" -device "loader,addr=$raw,cpu-num=0")
else
    boot=(-kernel "$image")
fi
cmd=("$qemu"
    -machine virt,virtualization=on,gic-version=2,secure=off
    -cpu cortex-a57 -smp 1 -m "$memory"
    -display none -monitor none
    -chardev stdio,id=console,signal=off -serial chardev:console
    -semihosting-config enable=on,userspace=on
    "${boot[@]}"
    "${extra[@]}")

if [ "$timeout_s" -gt 0 ]; then
    set +e
    # On a terminal, QEMU must stay in the foreground process group: timeout otherwise puts
    # it in a group of its own, and its first read of the terminal stops it (SIGTTIN).
    fg=()
    if [ -t 0 ]; then fg=(--foreground); fi
    timeout "${fg[@]}" --kill-after=5 "$timeout_s" "${cmd[@]}"
    status=$?
    set -e
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "run-qemu: no exit after ${timeout_s}s: stopped QEMU" >&2
        exit 124
    fi
    exit "$status"
fi
exec "${cmd[@]}"
