#!/usr/bin/env bash
# SC2317: the check functions are called through `check`; SC2016: the single-quoted scripts
# are expanded by the shell inside the container, on purpose.
# shellcheck disable=SC2317,SC2016
# Test the build container: build it (docker/run builds it when needed), check the pinned
# toolchain and tools inside it (the seL4 kernel's build tools too), check uid/gid and that
# the inputs are mounted read-only, run the workspace host build and a build of the `sel4`
# crate for aarch64-unknown-none inside it, and build the seL4 kernel and the capvisor image
# from a fresh build folder inside it and boot it (`ninja simulate`).
#
#   docker/test.sh
#
# Environment (relative paths are taken from the folder the script is started in):
#   SEL4_SOURCE           seL4 16.0.0 tarball or tree for the kernel build (default:
#                         ../shared/sel4/seL4-16.0.0.tar.gz beside the work tree when it is
#                         there, else CMake downloads the release)
#   CAPVISOR_SEL4_DATA    seL4 interface data for the host build (default: ../shared/sel4/16.0.0
#                         beside the work tree)
#   CAPVISOR_DOCKER_FLAVOURS  kernel flavours to boot (default "release"; "release debug")
#   CAPVISOR_SIMULATE_TIMEOUT  seconds for each of configure, build and boot (default 900)
#   CAPVISOR_KEEP_DOCKERD 1: leave a daemon this script started running
#   CARGO_TARGET_DIR      cargo's folder for the host and target builds (default
#                         build-docker/target: never the host's own target/)
#
# The kernel build runs in build-docker/<flavour>, a build folder of this script's own.
# No daemon and none startable: every check is reported skipped, with the reason, exit 0.
# Last line: "docker: N passed, N failed, N skipped"; exit status 1 when something failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
tree=$(cd "$here/.." && pwd -P)
caller=$(pwd -P)
# The caller's relative paths, made absolute before leaving the caller's folder.
for var in SEL4_SOURCE CAPVISOR_SEL4_DATA CARGO_TARGET_DIR; do
    if [ -n "${!var:-}" ]; then
        printf -v "$var" '%s' "$(cd "$caller" && realpath -m -s -- "${!var}")"
        export "${var?}"
    fi
done
cd "$tree" || exit 1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$tree/build-docker/target}
flavours=${CAPVISOR_DOCKER_FLAVOURS:-release}

passed=0 failed=0 skipped=0
logdir=$(mktemp -d /tmp/capvisor-docker-test.XXXXXX)

pass() { passed=$((passed + 1)); echo "PASS $1${2:+ ($2)}"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
# With CAPVISOR_REQUIRE_KERNEL=1 (CI) a check that cannot run fails instead.
skip() {
    if [ "${CAPVISOR_REQUIRE_KERNEL:-}" = 1 ]; then fail "$1" "cannot run: $2"; return; fi
    skipped=$((skipped + 1)); echo "SKIP $1: $2"
}
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
    local name
    for name in image toolchain tools uid-gid read-only-inputs host-build target-build; do skip "$name" "$why"; done
    for name in $flavours; do skip "simulate-$name" "$why"; done
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
sel4_source=${SEL4_SOURCE:-}
unset SEL4_SOURCE
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
        for t in aarch64-linux-gnu-gcc cc cmake ninja qemu-system-aarch64 dtc xmllint git python3; do
            command -v "$t" || { echo "missing: $t"; exit 1; }
        done
        qemu-system-aarch64 --version | head -n 1
        cmake --version | head -n 1
        # The kernel build'"'"'s Python: the modules kernel/sel4-kernel.cmake checks for, from
        # the pinned sel4-deps.
        echo "CAPVISOR_SEL4_PYTHON=$CAPVISOR_SEL4_PYTHON"
        "$CAPVISOR_SEL4_PYTHON" -c "import jinja2, ply, yaml, jsonschema, pyfdt, lxml"
        v=$("$CAPVISOR_SEL4_PYTHON" -c "import importlib.metadata as m; print(m.version(\"sel4-deps\"))")
        echo "sel4-deps $v"
        [ "$v" = 0.9.0 ] || { echo "sel4-deps is $v, not the pinned 0.9.0"; exit 1; }
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

# --- inputs: mounted read-only; host and target builds inside the container -----------------
data=${CAPVISOR_SEL4_DATA:-}
if [ -z "$data" ] && [ -d "$tree/../shared/sel4/16.0.0/libsel4" ]; then
    data=$(cd "$tree/../shared/sel4/16.0.0" && pwd -P)
fi
if [ -z "$sel4_source" ] && [ -f "$tree/../shared/sel4/seL4-16.0.0.tar.gz" ]; then
    # As a user would type it, relative to the work tree: CMake in the container resolves
    # it, so docker/run must mount what it names (its -D handling).
    sel4_source=../shared/sel4/seL4-16.0.0.tar.gz
fi

# In the container: each argument (a path, or -DNAME=path) is there and cannot be written.
ro_script='
    for p in "$@"; do
        p=${p#-D*=}
        [ -e "$p" ] || { echo "$p: not mounted"; exit 1; }
        if [ -d "$p" ]; then probe=$p/.write-probe; else probe=$p; fi
        if touch "$probe" 2>/dev/null; then echo "$p: writable"; [ -d "$p" ] && rm -f "$probe"; exit 1; fi
        echo "$p: read-only"
    done
'
if [ -z "$data" ] && [ -z "$sel4_source" ]; then
    skip read-only-inputs "no interface data and no seL4 source (set CAPVISOR_SEL4_DATA, SEL4_SOURCE)"
else
    ro_check() {
        if [ -n "$data" ]; then
            # From the environment: passed in absolute, mounted read-only.
            SEL4_PREFIX=$data CAPVISOR_SEL4_DATA=$data "$here/run" sh -c "$ro_script" sh "$data" || return 1
        fi
        if [ -n "$sel4_source" ]; then
            SEL4_SOURCE=$sel4_source "$here/run" sh -c 'echo "SEL4_SOURCE=$SEL4_SOURCE"; set -- "$SEL4_SOURCE"; '"$ro_script" \
                sh || return 1
            # In a -D argument: mounted where CMake in the container will look.
            "$here/run" sh -c "$ro_script" sh "-DSEL4_SOURCE=$sel4_source" || return 1
        fi
    }
    check read-only-inputs ro_check
fi

# The interface data has no C headers: the fault ABI comes from the kernel's source.
if [ -z "$data" ]; then
    skip host-build "no seL4 interface data (set CAPVISOR_SEL4_DATA)"
    skip target-build "no seL4 interface data (set CAPVISOR_SEL4_DATA)"
elif [ -z "$sel4_source" ]; then
    skip host-build "no seL4 source for the fault ABI (set SEL4_SOURCE)"
    skip target-build "no seL4 source for the fault ABI (set SEL4_SOURCE)"
else
    check host-build env SEL4_PREFIX="$data" CAPVISOR_SEL4_DATA="$data" SEL4_SOURCE="$sel4_source" "$here/run" cargo build
    # The no_std core crate for the seL4 target: the target's core/alloc are in the image.
    check target-build env SEL4_PREFIX="$data" CAPVISOR_SEL4_DATA="$data" SEL4_SOURCE="$sel4_source" "$here/run" \
        cargo build -p sel4 --target aarch64-unknown-none
fi

# --- boot: the kernel built from source in the container, then the image under QEMU ---------
# As in the README: cmake on a fresh build folder, then `ninja simulate`, each a docker/run
# of its own. QEMU ends with the root task's status: 0 after `capvisor: ALL OK`.
limit=${CAPVISOR_SIMULATE_TIMEOUT:-900}
simulate_check() {
    local flavour=$1 dir=build-docker/$1 src_arg=()
    if [ -n "$sel4_source" ]; then src_arg=("-DSEL4_SOURCE=$sel4_source"); fi
    echo "SEL4_SOURCE=${sel4_source:-(none: CMake downloads the release)}"
    rm -rf "$dir"
    "$here/run" timeout "$limit" cmake -G Ninja -B "$dir" -DCAPVISOR_KERNEL="$flavour" "${src_arg[@]}" \
        -DCARGO_TARGET_DIR="$tree/build-docker/cargo" -DQEMU_TIMEOUT="$limit" || return 1
    [ -f "$dir/sel4/$flavour/prefix/bin/kernel.elf" ] || { echo "no kernel built in $dir"; return 1; }
    "$here/run" timeout "$limit" ninja -C "$dir" simulate || return 1
    grep -q "capvisor: ALL OK" "$logdir/simulate-$flavour.log" || { echo "no 'capvisor: ALL OK' on the console"; return 1; }
}
if [ ! -f "$tree/CMakeLists.txt" ]; then
    for flavour in $flavours; do skip "simulate-$flavour" "no CMakeLists.txt in the work tree"; done
else
    for flavour in $flavours; do
        check "simulate-$flavour" simulate_check "$flavour" && grep -a "capvisor: ALL OK" "$logdir/simulate-$flavour.log" | sed 's/^/    /'
    done
fi

finish
