#!/usr/bin/env bash
# ctest `kernel-config-rules`: check-config.cmake passes a prefix equal to the interface data,
# refuses a kernel configuration key that differs without the platform declaring it, accepts
# it once declared (KERNEL_CONFIG_DIFFERS), refuses core-count keys on one core and accepts
# them with the matching count, and refuses a count that does not match.
#   kernel/test-check-config.sh DATA     (DATA: the interface data; copied, not changed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${1:-}
if [[ ! -d "$data/libsel4" ]]; then
    if [[ "${CAPVISOR_REQUIRE_KERNEL:-}" == 1 ]]; then echo "cannot run: no interface data at '$data'"; exit 1; fi
    echo "skipped: no interface data at '$data' (set CAPVISOR_SEL4_DATA)"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
# A prefix laid out as a release build installs it, from the data's release files.
mkdir -p "$work/p/libsel4/include/kernel" "$work/p/libsel4/include/sel4" "$work/p/libsel4/include/api" \
    "$work/p/libsel4/include/interfaces" "$work/p/support" "$work/p/extra" "$work/plat"
cp "$data/release/libsel4/include/kernel/gen_config.json" "$work/p/libsel4/include/kernel/"
cp "$data/libsel4/include/sel4/gen_config.json" "$work/p/libsel4/include/sel4/"
cp "$data/libsel4/include/api/syscall.xml" "$work/p/libsel4/include/api/"
cp "$data"/libsel4/include/interfaces/object-api*.xml "$work/p/libsel4/include/interfaces/"
cp "$data/support/platform_gen.json" "$work/p/support/"
cp "$data/extra/invocations_all.json" "$work/p/extra/"
config="$work/p/libsel4/include/kernel/gen_config.json"
check() { # check WANT(pass|fail) NAME WANTED-SUBSTRING CPUS
    local out r=0
    out=$(cmake "-DPREFIX=$work/p" "-DDATA=$data" -DFLAVOUR=release "-DPLATFORM_DIR=$work/plat" "-DCPUS=$4" \
        -P "$here/check-config.cmake" 2>&1) || r=$?
    if [[ $1 == pass && $r != 0 ]] || [[ $1 == fail && $r == 0 ]]; then
        echo "FAILED $2: wanted $1, got status $r: $out"; fails=$((fails + 1))
    elif [[ "$out" != *"$3"* ]]; then
        echo "FAILED $2: output does not say '$3': $out"; fails=$((fails + 1))
    else
        echo "ok $2"
    fi
}
echo "DESCRIPTION=test" >"$work/plat/platform.env"
check pass "equal to the data" "same: libsel4/include/kernel/gen_config.json" 1
sed -i 's/"ARM_GIC_V3_SUPPORT": false/"ARM_GIC_V3_SUPPORT": true/' "$config"
check fail "an undeclared difference" "ARM_GIC_V3_SUPPORT: ON (data: OFF)" 1
echo "KERNEL_CONFIG_DIFFERS=ARM_GIC_V3_SUPPORT" >>"$work/plat/platform.env"
check pass "a declared difference" "platform's own keys (ARM_GIC_V3_SUPPORT)" 1
sed -i 's/"MAX_NUM_NODES": "1"/"MAX_NUM_NODES": "2"/; s/"ENABLE_SMP_SUPPORT": false/"ENABLE_SMP_SUPPORT": true/' "$config"
check fail "two cores' keys in a one-core build" "MAX_NUM_NODES: 2 (data: 1)" 1
check pass "two cores' keys in a two-core build" "MAX_NUM_NODES" 2
check fail "a core count the kernel was not built for" "MAX_NUM_NODES is 2, the build asked for 3" 3
echo "$((6 - fails)) of 6 passed"
exit $((fails > 0))
