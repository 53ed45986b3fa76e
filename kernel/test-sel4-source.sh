#!/usr/bin/env bash
# ctest `kernel-source`: sel4-source.py passes the pinned tree and refuses a changed, a
# missing and an extra file and a changed link, naming each.
#   kernel/test-sel4-source.sh TREE     (TREE: a verified seL4 source tree; copied, not changed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tool=$here/sel4-source.py
manifest=$(ls "$here"/seL4-*.manifest)
tree=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
expect() { # expect NAME WANTED-SUBSTRING: verify the copy, which must fail naming it
    local out
    if out=$(python3 "$tool" verify "$manifest" "$work/t" 2>&1); then
        echo "FAILED $1: a tampered tree was accepted"; fails=$((fails + 1))
    elif [[ "$out" != *"$2"* ]]; then
        echo "FAILED $1: message does not name $2: $out"; fails=$((fails + 1))
    else
        echo "ok $1: $out"
    fi
}
fresh() { rm -rf "$work/t"; cp -a "$tree" "$work/t"; }

fresh
python3 "$tool" verify "$manifest" "$work/t" && echo "ok pinned tree accepted" || { echo "FAILED pinned tree refused"; fails=$((fails + 1)); }
fresh; echo '/* changed */' >>"$work/t/src/kernel/boot.c"; expect changed "src/kernel/boot.c"
fresh; rm "$work/t/libsel4/include/api/syscall.xml"; expect missing "libsel4/include/api/syscall.xml"
fresh; echo x >"$work/t/src/extra.c"; expect extra "src/extra.c"
fresh; rm "$work/t/libsel4/include/interfaces/sel4.xml"; ln -s object-api-arch.xml "$work/t/libsel4/include/interfaces/sel4.xml"; expect link "libsel4/include/interfaces/sel4.xml"
echo "$((5 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
