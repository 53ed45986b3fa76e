#!/usr/bin/env python3
"""The seL4 source capvisor builds: unpack it, verify it against the pinned manifest, or make
the manifest.

  sel4-source.py verify MANIFEST TREE     exit 0 when TREE is exactly the pinned tree
  sel4-source.py unpack ARCHIVE DEST      unpack a .tar.gz/.tar.xz/.tar (one top folder) to DEST
  sel4-source.py manifest TREE            print the manifest of TREE (to pin a new release)

The manifest has one line per file or symbolic link, sorted by path:
  file <sha256 of the contents> <path>
  link <target> <path>
Directories are implied. Any archive of the tag (git archive, the forge's tarball) unpacks
to the same entries, so it passes; anything else is refused with one line naming the first
entry that differs. Standard library only: this runs before any venv exists.
"""
import hashlib
import os
import shutil
import sys
import tarfile


def entries(tree):
    """The manifest lines of TREE as {path: (kind, value)}."""
    out = {}
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in list(dirs):
            full = os.path.join(root, name)
            if os.path.islink(full):
                # os.walk lists a link to a directory among dirs; it is an entry, not a folder.
                dirs.remove(name)
                files.append(name)
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, tree).replace(os.sep, "/")
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            else:
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    for block in iter(lambda: f.read(1 << 16), b""):
                        h.update(block)
                out[rel] = ("file", h.hexdigest())
    return out


def read_manifest(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ", 2)
            if len(parts) != 3 or parts[0] not in ("file", "link"):
                sys.exit(f"{path}:{n}: expected `file SHA256 PATH` or `link TARGET PATH`, found {line!r}")
            out[parts[2]] = (parts[0], parts[1])
    return out


def verify(manifest, tree):
    want = read_manifest(manifest)
    if not os.path.isdir(tree):
        return f"{tree} is not a directory"
    have = entries(tree)
    for path in sorted(set(want) | set(have)):
        w, h = want.get(path), have.get(path)
        if w == h:
            continue
        if h is None:
            return f"{path} is missing from {tree}"
        if w is None:
            return f"{path} in {tree} is not part of the pinned release"
        if w[0] != h[0]:
            return f"{path} in {tree} is a {h[0]}, the pinned release has a {w[0]}"
        if w[0] == "link":
            return f"{path} in {tree} points at {h[1]}, the pinned release's at {w[1]}"
        return f"{path} in {tree} differs from the pinned release (sha256 {h[1]}, pinned {w[1]})"
    return None


def unpack(archive, dest):
    """Unpacks ARCHIVE's single top folder to DEST (replaced if present)."""
    tmp = dest + ".unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(archive) as t:
        members = t.getmembers()
        tops = {m.name.split("/", 1)[0] for m in members if m.name not in ("", ".", "pax_global_header")}
        tops.discard("pax_global_header")
        if len(tops) != 1:
            return f"{archive}: expected one top-level folder, found {len(tops)}: {sorted(tops)[:5]}"
        if hasattr(tarfile, "tar_filter"):
            t.extractall(tmp, filter="tar")
        else:  # Python before 3.11.4 (PEP 706): the archive is verified after unpacking
            t.extractall(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(os.path.join(tmp, tops.pop()), dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return None


def main(argv):
    if len(argv) == 4 and argv[1] == "verify":
        err = verify(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "unpack":
        err = unpack(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "manifest":
        for path, (kind, value) in sorted(entries(argv[2]).items()):
            print(f"{kind} {value} {path}")
        err = None
    else:
        sys.stderr.write(__doc__)
        return 2
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
