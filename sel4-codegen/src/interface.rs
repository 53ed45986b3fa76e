//! The kernel's object interface (`interfaces/object-api*.xml`): invocation labels numbered
//! as seL4's `invocation_header_gen.py` does, and a message encoder per method packed as
//! `syscall_stub_gen.py` packs it. Also the `if_syscall!` macro through which the raw
//! system call layer exists only for the system calls this configuration has.
//!
//! Owns only text generation; never reads anything but the prefix it is given.

use std::fmt::Write as _;

use crate::syscalls::Syscalls;

/// `if_syscall!(Name { items })`: expands `items` only when system call `Name` exists in
/// this configuration. Names the configuration numbers but disables expand to nothing;
/// names `syscall.xml` does not have at all fail to compile, so a typo is caught.
pub fn syscall_gate_macro(syscalls: &Syscalls) -> String {
    let mut out = String::from(
        "/// Expands the items in braces only if the named system call exists in this configuration.\n\
         macro_rules! if_syscall {\n",
    );
    for s in &syscalls.all {
        let body = if s.enabled { "$($item)*" } else { "" };
        writeln!(out, "    ({} {{ $($item:item)* }}) => {{ {body} }};", s.name).unwrap();
    }
    out.push_str("}\n#[allow(unused_imports)]\npub(crate) use if_syscall;\n");
    out
}
