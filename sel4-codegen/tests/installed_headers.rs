//! Cross-check of everything the generator derives (object type numbers and sizes, system
//! call numbers, invocation labels, structure sizes) against the C headers of a real
//! installed kernel, compiled with the AArch64 cross compiler as `_Static_assert`s.
//!
//! The prefix is `SEL4_KERNEL_PREFIX`, else `SEL4_PREFIX` (an installed kernel with headers,
//! e.g. the CMake build's build/sel4/release/prefix); without one, or without
//! `aarch64-linux-gnu-gcc`, the test fails saying which. With `CAPVISOR_NO_KERNEL_HEADERS=1`
//! a missing prefix is a recorded skip instead (host builds against the interface data).

use sel4_codegen::header_check::{CC, check_static_asserts, installed_kernel_prefix_or_skip};
use std::fmt::Write as _;
use std::path::PathBuf;

use sel4_codegen::interface::{Interface, ParamKind};
use sel4_codegen::objects::ObjectLayout;
use sel4_codegen::syscalls::Syscalls;
use sel4_codegen::{KernelConfig, Prefix};

fn object_type_c_name(name: &str) -> &'static str {
    match name {
        "UNTYPED" => "seL4_UntypedObject",
        "TCB" => "seL4_TCBObject",
        "ENDPOINT" => "seL4_EndpointObject",
        "NOTIFICATION" => "seL4_NotificationObject",
        "CAP_TABLE" => "seL4_CapTableObject",
        "SCHED_CONTEXT" => "seL4_SchedContextObject",
        "REPLY" => "seL4_ReplyObject",
        "HUGE_PAGE" => "seL4_ARM_HugePageObject",
        "VSPACE" => "seL4_ARM_VSpaceObject",
        "SMALL_PAGE" => "seL4_ARM_SmallPageObject",
        "LARGE_PAGE" => "seL4_ARM_LargePageObject",
        "PAGE_TABLE" => "seL4_ARM_PageTableObject",
        "VCPU" => "seL4_ARM_VCPUObject",
        "IO_PAGE_TABLE" => "seL4_ARM_IOPageTableObject",
        "COUNT" => "seL4_ObjectTypeCount",
        other => panic!("object type {other} has no C name here: add it"),
    }
}

fn object_bits_c_name(name: &str) -> &'static str {
    match name {
        "PAGE" => "seL4_PageBits",
        "LARGE_PAGE" => "seL4_LargePageBits",
        "HUGE_PAGE" => "seL4_HugePageBits",
        "SLOT" => "seL4_SlotBits",
        "TCB" => "seL4_TCBBits",
        "ENDPOINT" => "seL4_EndpointBits",
        "NOTIFICATION" => "seL4_NotificationBits",
        "PAGE_TABLE" => "seL4_PageTableBits",
        "PAGE_TABLE_INDEX" => "seL4_PageTableIndexBits",
        "VSPACE" => "seL4_VSpaceBits",
        "VSPACE_INDEX" => "seL4_VSpaceIndexBits",
        "VCPU" => "seL4_VCPUBits",
        "ASID_POOL" => "seL4_ASIDPoolBits",
        "MIN_UNTYPED" => "seL4_MinUntypedBits",
        "MAX_UNTYPED" => "seL4_MaxUntypedBits",
        other => panic!("size {other} has no C name here: add it"),
    }
}

/// The C file: one `_Static_assert` per derived number. Returns (text, number of asserts).
fn assertions(prefix: &Prefix) -> (String, usize) {
    let config = KernelConfig::load(prefix).unwrap();
    let layout = ObjectLayout::for_config(&config).unwrap();
    let syscalls = Syscalls::load(prefix, &config).unwrap();
    let iface = Interface::load(prefix, &config).unwrap();
    let mut c = String::from("#include <sel4/sel4.h>\n#include <stddef.h>\n");
    let mut n = 0;
    let mut check = |c: &mut String, expr: String| {
        writeln!(c, "_Static_assert({expr}, \"{}\");", expr.replace('"', "'")).unwrap();
        n += 1;
    };
    for (name, v) in &layout.types {
        check(&mut c, format!("{} == {v}", object_type_c_name(name)));
    }
    for (name, v) in &layout.bits {
        check(&mut c, format!("{} == {v}", object_bits_c_name(name)));
    }
    for s in syscalls.all.iter().filter(|s| s.enabled) {
        check(&mut c, format!("seL4_Sys{} == {}", s.name, s.number));
    }
    for (id, v) in &iface.labels {
        check(&mut c, format!("{id} == {v}"));
    }
    check(&mut c, format!("nArchInvocationLabels == {}", iface.labels.len() + 1));
    let mut structs: Vec<(&str, u32)> = iface
        .methods
        .iter()
        .flat_map(|m| m.inputs.iter().chain(&m.outputs))
        .filter_map(|p| match p.kind {
            ParamKind::Struct { words } => Some((p.c_type.as_str(), words)),
            _ => None,
        })
        .collect();
    structs.sort();
    structs.dedup();
    for (name, words) in structs {
        check(&mut c, format!("sizeof({name}) == {words} * sizeof(seL4_Word)"));
    }
    // sel4::sys::IpcBuffer mirrors this layout; its host test pins the same offsets.
    check(&mut c, "sizeof(seL4_IPCBuffer) == 1024".into());
    check(&mut c, "offsetof(seL4_IPCBuffer, msg) == 8".into());
    check(&mut c, "offsetof(seL4_IPCBuffer, caps_or_badges) == 122 * 8".into());
    check(&mut c, "offsetof(seL4_IPCBuffer, receiveDepth) == 127 * 8".into());
    check(&mut c, "seL4_MsgMaxLength == 120 && seL4_MsgMaxExtraCaps == 3".into());
    (c, n)
}

#[test]
fn generated_numbers_match_the_installed_headers() {
    let Some(root) = installed_kernel_prefix_or_skip() else { return };
    let prefix = Prefix::new(&root).unwrap();
    let (text, count) = assertions(&prefix);
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if let Err(e) = check_static_asserts(&root, &work, "header_check", &text, "seL4_SysCall == 12345") {
        panic!("{e}");
    }
    eprintln!("checked {count} generated values against the headers of {} with {CC}", root.display());
}
