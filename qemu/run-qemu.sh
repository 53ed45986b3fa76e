#!/usr/bin/env bash
# Boots a capvisor image (the ELF from `capvisor image`) under QEMU: the one QEMU command
# line of the project, used by `ninja simulate`, the kernel suites and the benchmarks.
#
#   qemu/run-qemu.sh [--platform NAME] [--cpus N] [--timeout SECS] [--memory MiB] [--raw ADDR]
#                    IMAGE [-- EXTRA QEMU ARGS...]
#
# The machine is the platform's (platforms/NAME/platform.env; default qemu-arm-virt: QEMU virt
# with EL2, GICv2, Cortex-A57, 2048 MiB) with N cores (default 1; the kernel must be built for
# as many, -DCAPVISOR_NUM_CPUS; a machine with a fixed number of cores, QEMU_SMP=, always has
# that many and parks the ones the kernel does not start). The platform names the lowest QEMU
# it needs; $QEMU, else qemu-system-aarch64 on the PATH, must be at least that. When $QEMU is
# unset and the PATH's QEMU is older, the QEMU that scripts/qemu-backports fetched is used
# (${CAPVISOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/capvisor}/qemu-10).
#
# On a platform that boots ELF images (QEMU_BOOT=elf), IMAGE is the ELF, given to QEMU's
# -kernel (QEMU places every segment and its DTB at the base of RAM). With --raw, IMAGE is
# the flat binary (`capvisor image`'s OUT.bin), loaded at ADDR and entered there as U-Boot's
# `go` would; QEMU then places no DTB, so the image needs one packed (`capvisor image --dtb`).
# On a platform that boots raw images (QEMU_BOOT=raw, the Raspberry Pi 4), IMAGE is the flat
# binary, given to QEMU's -kernel as the board's firmware loads it (raspi4b: at 0x80000, at
# EL2, the other cores in the spin table); QEMU_EXTRA= adds the platform's own options.
#
# The console is on stdio without signals (Ctrl-C and Ctrl-A reach the guest and capvisor's
# console keys, not QEMU; end a run with Ctrl-A x), and semihosting is open to EL0 so the
# root task can end QEMU with its status.
#
# Exit status: the root task's (0 all self-tests passed), 124 on timeout, 2 on bad usage.
set -euo pipefail

usage() {
    echo "usage: $0 [--platform NAME] [--cpus N] [--timeout SECS] [--memory MiB] [--raw ADDR] IMAGE [-- EXTRA QEMU ARGS...]" >&2
    exit 2
}

timeout_s=0
platform=qemu-arm-virt
cpus=1
memory=""
raw=""
image=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
        --platform) [ $# -ge 2 ] || usage; platform="$2"; shift 2 ;;
        --cpus) [ $# -ge 2 ] || usage; cpus="$2"; shift 2 ;;
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
case "$cpus" in ''|0*|*[!0-9]*) echo "run-qemu: --cpus wants a number of cores (1 or more), got $cpus" >&2; exit 2 ;; esac

# The platform's facts: KEY=value lines, read as data (no shell).
platform_dir="$(cd "$(dirname "$0")/.." && pwd)/platforms/$platform"
env_file="$platform_dir/platform.env"
if [ ! -f "$env_file" ]; then
    known=$(cd "$(dirname "$0")/../platforms" && ls -d -- */ 2>/dev/null | tr -d / | tr '\n' ' ')
    echo "run-qemu: --platform $platform: no platforms/$platform/platform.env (known: $known)" >&2
    exit 2
fi
declare -A plat=()
n=0
while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    case "$line" in ''|'#'*) continue ;; esac
    key="${line%%=*}"
    if [ "$key" = "$line" ] || ! [[ "$key" =~ ^[A-Z_0-9]+$ ]]; then
        echo "run-qemu: platforms/$platform/platform.env:$n: not KEY=value: $line" >&2
        exit 2
    fi
    plat[$key]="${line#*=}"
done <"$env_file"
for key in QEMU_MACHINE QEMU_CPU QEMU_MEMORY QEMU_BOOT QEMU_NEEDS MAX_CPUS; do
    [ -n "${plat[$key]:-}" ] || { echo "run-qemu: platforms/$platform/platform.env: no $key=" >&2; exit 2; }
done
if [ "$cpus" -gt "${plat[MAX_CPUS]}" ]; then
    echo "run-qemu: --cpus $cpus: platform $platform has at most ${plat[MAX_CPUS]} (MAX_CPUS)" >&2
    exit 2
fi
min_memory="${plat[QEMU_MEMORY]}"
memory="${memory:-$min_memory}"
case "$memory" in ''|*[!0-9]*) echo "run-qemu: --memory wants MiB, got $memory" >&2; exit 2 ;; esac
if [ "$memory" -lt "$min_memory" ]; then
    echo "run-qemu: --memory $memory: platform $platform needs at least $min_memory MiB (the kernel's platform memory)" >&2
    exit 2
fi
qemu="${QEMU:-qemu-system-aarch64}"
qemu_version() { "$1" --version 2>/dev/null | sed -n '1s/.*version \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p'; }
# Whether version $1 is at least the platform's QEMU_NEEDS (major.minor).
new_enough() { [ -n "$1" ] && [ "$(printf '%s\n%s\n' "${plat[QEMU_NEEDS]}" "$1" | sort -V | head -1)" = "${plat[QEMU_NEEDS]}" ]; }
backports="${CAPVISOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/capvisor}/qemu-10/bin/qemu-system-aarch64"
have=""
if command -v "$qemu" >/dev/null; then have=$(qemu_version "$qemu"); fi
if [ -z "${QEMU:-}" ] && ! new_enough "$have" && [ -x "$backports" ] && new_enough "$(qemu_version "$backports")"; then
    qemu="$backports"
    have=$(qemu_version "$qemu")
fi
command -v "$qemu" >/dev/null || { echo "run-qemu: $qemu not found (Debian: apt-get install qemu-system-arm)" >&2; exit 2; }
# The QEMU must be at least the platform's QEMU_NEEDS (major.minor).
if ! new_enough "$have"; then
    echo "run-qemu: platform $platform needs QEMU ${plat[QEMU_NEEDS]} or later; $qemu is ${have:-of unknown version} (set QEMU=..., or fetch one: scripts/qemu-backports)" >&2
    exit 2
fi

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }
case "${plat[QEMU_BOOT]}" in
    elf) ;;
    raw)
        [ -z "$raw" ] || { echo "run-qemu: platform $platform boots the flat binary at the firmware's address: no --raw" >&2; exit 2; }
        if is_elf "$image"; then
            echo "run-qemu: platform $platform boots the flat binary (capvisor image's OUT.bin), and $image is an ELF" >&2
            exit 2
        fi
        ;;
    *) echo "run-qemu: platforms/$platform/platform.env: QEMU_BOOT=${plat[QEMU_BOOT]}: this script boots elf or raw" >&2; exit 2 ;;
esac
smp="$cpus"
if [ -n "${plat[QEMU_SMP]:-}" ]; then smp="${plat[QEMU_SMP]}"; fi
if [ -n "$raw" ]; then
    case "$raw" in 0x[0-9a-fA-F]*) ;; *) echo "run-qemu: --raw wants a hex address, got $raw" >&2; exit 2 ;; esac
    boot=(-device "loader,file=$image,addr=$raw,force-raw=on" -device "loader,addr=$raw,cpu-num=0")
else
    boot=(-kernel "$image")
fi
extra_platform=()
if [ -n "${plat[QEMU_EXTRA]:-}" ]; then read -r -a extra_platform <<<"${plat[QEMU_EXTRA]}"; fi
cmd=("$qemu"
    -machine "${plat[QEMU_MACHINE]}"
    -cpu "${plat[QEMU_CPU]}" -smp "$smp" -m "$memory"
    -display none -monitor none
    -chardev stdio,id=console,signal=off -serial chardev:console
    -semihosting-config enable=on,userspace=on
    "${extra_platform[@]}"
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
