//! The fault labels and message layouts that `sel4::fault` was generated with, against the C
//! headers of the same prefix (`SEL4_PREFIX` when the crate was built), compiled with the
//! AArch64 cross compiler as `_Static_assert`s. It fails when the compiler is missing. A
//! prefix without headers (the interface data: the fault ABI was then read from the kernel
//! source, which sel4-codegen's tests/fault_abi_routes.rs compares with installed headers)
//! fails too, unless `CAPVISOR_NO_KERNEL_HEADERS=1` makes it a recorded skip.

use std::fmt::Write as _;
use std::path::PathBuf;

use sel4::fault::{
    HEADER_VALUES, cap_fault, label, unknown_syscall, user_exception, vcpu_fault, vgic_maintenance, vm_fault,
    vppi_event,
};
use sel4_codegen::fault::has_headers;
use sel4_codegen::header_check::{CC, cannot_check, check_static_asserts};

/// The constants `Fault::decode` and its users read, by Rust name, with their C names: a
/// constant generated under the wrong name or module fails here.
fn by_rust_name() -> Vec<(&'static str, u64)> {
    vec![
        ("seL4_Fault_NullFault", label::NULL_FAULT),
        ("seL4_Fault_CapFault", label::CAP_FAULT),
        ("seL4_Fault_UnknownSyscall", label::UNKNOWN_SYSCALL),
        ("seL4_Fault_UserException", label::USER_EXCEPTION),
        ("seL4_Fault_VMFault", label::VM_FAULT),
        ("seL4_Fault_VGICMaintenance", label::VGIC_MAINTENANCE),
        ("seL4_Fault_VCPUFault", label::VCPU_FAULT),
        ("seL4_Fault_VPPIEvent", label::VPPI_EVENT),
        ("seL4_VMFault_IP", vm_fault::IP as u64),
        ("seL4_VMFault_Addr", vm_fault::ADDR as u64),
        ("seL4_VMFault_PrefetchFault", vm_fault::PREFETCH_FAULT as u64),
        ("seL4_VMFault_FSR", vm_fault::FSR as u64),
        ("seL4_VMFault_Length", vm_fault::LENGTH as u64),
        ("seL4_UnknownSyscall_X0", unknown_syscall::X0 as u64),
        ("seL4_UnknownSyscall_X7", unknown_syscall::X7 as u64),
        ("seL4_UnknownSyscall_FaultIP", unknown_syscall::FAULT_IP as u64),
        ("seL4_UnknownSyscall_SP", unknown_syscall::SP as u64),
        ("seL4_UnknownSyscall_LR", unknown_syscall::LR as u64),
        ("seL4_UnknownSyscall_SPSR", unknown_syscall::SPSR as u64),
        ("seL4_UnknownSyscall_Syscall", unknown_syscall::SYSCALL as u64),
        ("seL4_UnknownSyscall_Length", unknown_syscall::LENGTH as u64),
        ("seL4_UnknownSyscall_FaultIP + 1", unknown_syscall::REPLY_LENGTH as u64),
        ("seL4_UserException_FaultIP", user_exception::FAULT_IP as u64),
        ("seL4_UserException_SP", user_exception::SP as u64),
        ("seL4_UserException_SPSR", user_exception::SPSR as u64),
        ("seL4_UserException_Number", user_exception::NUMBER as u64),
        ("seL4_UserException_Code", user_exception::CODE as u64),
        ("seL4_UserException_Length", user_exception::LENGTH as u64),
        ("seL4_VGICMaintenance_IDX", vgic_maintenance::IDX as u64),
        ("seL4_VGICMaintenance_Length", vgic_maintenance::LENGTH as u64),
        ("seL4_VPPIEvent_IRQ", vppi_event::IRQ as u64),
        ("seL4_VPPIEvent_Length", vppi_event::LENGTH as u64),
        ("seL4_VCPUFault_HSR", vcpu_fault::HSR as u64),
        ("seL4_VCPUFault_Length", vcpu_fault::LENGTH as u64),
        ("seL4_CapFault_IP", cap_fault::IP as u64),
        ("seL4_CapFault_Addr", cap_fault::ADDR as u64),
        ("seL4_CapFault_InRecvPhase", cap_fault::IN_RECV_PHASE as u64),
        ("seL4_CapFault_LookupFailureType", cap_fault::LOOKUP_FAILURE_TYPE as u64),
        ("seL4_CapFault_LookupFailureType + 1", cap_fault::MIN_LENGTH as u64),
    ]
}

#[test]
fn the_generated_fault_abi_is_the_headers() {
    let root = PathBuf::from(env!("SEL4_PREFIX_RESOLVED"));
    if !has_headers(&root) {
        cannot_check(&format!(
            "sel4 was built with SEL4_PREFIX={}, which has no C headers (its fault ABI came from the kernel source)",
            root.display()
        ));
        return;
    }
    let mut c = String::from("#include <sel4/sel4.h>\n");
    let mut count = 0;
    for (name, v) in HEADER_VALUES.iter().copied().chain(by_rust_name()) {
        writeln!(c, "_Static_assert({name} == {v}, \"{name}\");").unwrap();
        count += 1;
    }
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    check_static_asserts(&root, &work, "fault_abi", &c, "seL4_Fault_VMFault == seL4_Fault_VMFault + 1")
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("checked {count} fault ABI values against the headers of {} with {CC}", root.display());
}
