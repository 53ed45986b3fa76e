#!/usr/bin/env bash
# SC2317: the check functions are called through `check`; SC2016: the single-quoted scripts
# are expanded by the shell inside the container, on purpose.
# shellcheck disable=SC2317,SC2016
# Test the build container: build it (docker/run builds it when needed), check the pinned
# toolchain and tools inside it, check uid/gid and the read-only kernel mount, run the
# workspace host build and a build of the `sel4` crate for aarch64-unknown-none inside it, and, when a real kernel and the CMake build are present,
# build and boot the image inside it (`ninja simulate`).
#
#   docker/test.sh
#
# Environment:
#   CAPVISOR_SEL4_DATA    seL4 interface data for the host build (default: ../shared/sel4/16.0.0
#                         beside the work tree, else /work/shared/sel4/16.0.0)
#   CAPVISOR_SEL4_KERNEL  an installed kernel (bin/kernel.elf) for the boot (default /opt/sel4-16)
#   CAPVISOR_SIMULATE_TIMEOUT  seconds for `ninja simulate` (default 900)
#   CAPVISOR_KEEP_DOCKERD 1: leave a daemon this script started running
#   CARGO_TARGET_DIR      passed through (docker/run mounts it)
#
# No daemon and none startable: every check is reported skipped, with the reason, exit 0.
# Last line: "docker: N passed, N failed, N skipped"; exit status 1 when something failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
tree=$(cd "$here/.." && pwd -P)
cd "$tree" || exit 1

passed=0 failed=0 skipped=0
logdir=$(mktemp -d /tmp/capvisor-docker-test.XXXXXX)

pass() { passed=$((passed + 1)); echo "PASS $1${2:+ ($2)}"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
finish() {
    echo "logs: $logdir"
    echo "docker: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" = 0 ]
    exit
}

# Run a check: NAME then a command; its output goes to $logdir/NAME.log, its time is shown.
check() {
    local name=$1 t0 rc
    shift
    t0=$(date +%s)
    "$@" >"$logdir/$name.log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then
        pass "$name" "$(($(date +%s) - t0)) s"
    else
        fail "$name" "exit $rc after $(($(date +%s) - t0)) s; last lines of $logdir/$name.log:"
        tail -n 25 "$logdir/$name.log" | sed 's/^/    /'
    fi
    return "$rc"
}

all_skipped() {
    local why=$1
    for name in image toolchain tools uid-gid sel4-prefix-read-only host-build target-build simulate; do skip "$name" "$why"; done
    finish
}

# --- the daemon ---------------------------------------------------------------------------
if ! command -v docker >/dev/null; then
    all_skipped "no docker client (apt-get install docker.io)"
fi
started=
if ! state=$("$here/start-daemon" 2>"$logdir/start-daemon.log"); then
    all_skipped "no Docker daemon: $(tail -n 1 "$logdir/start-daemon.log")"
fi
case "$state" in
    started\ *)
        started=${state#started }
        echo "started dockerd (pid $started)"
        if [ "${CAPVISOR_KEEP_DOCKERD:-0}" != 1 ]; then
            # Not our child (start-daemon detached it): signal it and wait for it to go.
            stop_daemon() {
                kill "$started" 2>/dev/null || return 0
                for _ in $(seq 1 60); do kill -0 "$started" 2>/dev/null || return 0; sleep 0.5; done
                echo "dockerd (pid $started) still running 30 s after SIGTERM"
            }
            trap stop_daemon EXIT
        fi
        ;;
esac

# --- the image ----------------------------------------------------------------------------
export CAPVISOR_DOCKER_QUIET=1
unset SEL4_PREFIX
check image "$here/run" true || finish

# --- toolchain: what rust-toolchain.toml pins is what the container has ---------------------
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
toolchain_check() {
    local out
    "$here/run" cargo --version || return 1
    "$here/run" rustc --version || return 1
    out=$("$here/run" sh -c 'rustup show active-toolchain; rustup component list --installed; rustup target list --installed; cargo clippy --version; cargo fmt --version') || return 1
    echo "$out"
    grep -q "^$channel-" <<<"$out" || { echo "active toolchain is not $channel"; return 1; }
    for want in rust-src clippy rustfmt aarch64-unknown-none; do
        grep -q "^$want" <<<"$out" || { echo "missing: $want"; return 1; }
    done
}
check toolchain toolchain_check && sed -n '1,2p' "$logdir/toolchain.log" | sed 's/^/    /'

tools_check() {
    "$here/run" sh -c '
        set -e
        for t in aarch64-linux-gnu-gcc cc cmake ninja qemu-system-aarch64 dtc git python3; do
            command -v "$t" || { echo "missing: $t"; exit 1; }
        done
        qemu-system-aarch64 --version | head -n 1
        cmake --version | head -n 1
        # The cross compiler really compiles for AArch64.
        printf "int f(int x) { return x + 1; }\n" > /tmp/t.c
        aarch64-linux-gnu-gcc -c -o /tmp/t.o /tmp/t.c
        python3 -c "import sys; f = open(\"/tmp/t.o\", \"rb\").read(20); sys.exit(0 if f[:4] == b\"\\x7fELF\" and f[18] == 183 else 1)"
        # QEMU starts the machine capvisor targets (halted with -S; timeout ends it: 124).
        rc=0
        timeout 3 qemu-system-aarch64 -machine virt,virtualization=on,gic-version=2 -cpu cortex-a57 \
            -m 1024 -display none -monitor none -serial none -S || rc=$?
        [ "$rc" = 124 ] || { echo "qemu-system-aarch64 did not start the virt machine (exit $rc)"; exit 1; }
        echo "qemu: virt,virtualization=on,gic-version=2 starts"
    '
}
check tools tools_check

# --- uid/gid: files made in the container belong to the invoking user ------------------------
uid_check() {
    local dir probe uid gid owner
    uid=$(id -u)
    gid=$(id -g)
    dir=$(mktemp -d "$tree/.docker-test.XXXXXX") || return 1
    probe=$dir/probe
    "$here/run" sh -c 'id; touch "$1"' sh "$probe" || { rm -rf "$dir"; return 1; }
    owner=$(stat -c %u:%g "$probe")
    echo "invoking user $uid:$gid, file made in the container: $owner"
    [ "$owner" = "$uid:$gid" ] || { rm -rf "$dir"; return 1; }
    # As root, also run as another user: root mapping to root would pass either way.
    if [ "$uid" = 0 ] && command -v setpriv >/dev/null && getent group docker >/dev/null; then
        local other=4321 dgid
        dgid=$(getent group docker | cut -d: -f3)
        if [ "$(stat -c %g /var/run/docker.sock 2>/dev/null)" = "$dgid" ]; then
            chown "$other:$other" "$dir"
            rm -f "$probe"
            setpriv --reuid="$other" --regid="$other" --groups="$dgid" env HOME="$dir" \
                "$here/run" sh -c 'id; touch "$1"' sh "$probe" || { rm -rf "$dir"; return 1; }
            owner=$(stat -c %u:%g "$probe")
            echo "as $other:$other, file made in the container: $owner"
            [ "$owner" = "$other:$other" ] || { rm -rf "$dir"; return 1; }
        else
            echo "(docker socket not group docker: no check as another user)"
        fi
    fi
    rm -rf "$dir"
}
check uid-gid uid_check

# --- seL4 interface data: mounted read-only, host build inside the container ----------------
data=${CAPVISOR_SEL4_DATA:-}
if [ -z "$data" ]; then
    for d in "$tree/../shared/sel4/16.0.0" /work/shared/sel4/16.0.0; do
        if [ -d "$d/libsel4" ]; then data=$(cd "$d" && pwd -P); break; fi
    done
fi
if [ -z "$data" ]; then
    skip sel4-prefix-read-only "no seL4 interface data (set CAPVISOR_SEL4_DATA)"
    skip host-build "no seL4 interface data (set CAPVISOR_SEL4_DATA)"
    skip target-build "no seL4 interface data (set CAPVISOR_SEL4_DATA)"
else
    ro_check() {
        SEL4_PREFIX=$data "$here/run" sh -c '
            echo "SEL4_PREFIX=$SEL4_PREFIX"
            test -d "$SEL4_PREFIX/libsel4" || { echo "not mounted"; exit 1; }
            if touch "$SEL4_PREFIX/.write-probe" 2>/dev/null; then echo "writable"; rm -f "$SEL4_PREFIX/.write-probe"; exit 1; fi
            echo "read-only: ok"
        '
    }
    check sel4-prefix-read-only ro_check
    check host-build env SEL4_PREFIX="$data" "$here/run" cargo build
    # The no_std core crate for the seL4 target: the target's core/alloc are in the image.
    check target-build env SEL4_PREFIX="$data" "$here/run" cargo build -p sel4 --target aarch64-unknown-none
fi

# --- boot: a real kernel and the CMake build ------------------------------------------------
kernel=${CAPVISOR_SEL4_KERNEL:-/opt/sel4-16}
if [ ! -f "$kernel/bin/kernel.elf" ]; then
    skip simulate "no installed kernel at $kernel (bin/kernel.elf); set CAPVISOR_SEL4_KERNEL"
elif [ ! -f "$tree/CMakeLists.txt" ]; then
    skip simulate "no CMakeLists.txt in the work tree yet"
else
    simulate_check() {
        SEL4_PREFIX=$kernel "$here/run" timeout "${CAPVISOR_SIMULATE_TIMEOUT:-900}" sh -c '
            cmake -G Ninja -B build-docker -DSEL4_PREFIX="$SEL4_PREFIX" && ninja -C build-docker simulate
        '
    }
    check simulate simulate_check
fi

finish
