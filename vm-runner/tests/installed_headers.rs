//! The fault labels and fault message layouts in `vm_runner::fault` against the C headers of
//! a real installed seL4 16.0.0, compiled with the AArch64 cross compiler as
//! `_Static_assert`s: hand-written ABI numbers must not go stale silently.
//!
//! Runs when `SEL4_KERNEL_PREFIX` (or else `SEL4_PREFIX`) names a prefix with headers
//! (`libsel4/include/sel4/sel4.h`, e.g. the CMake build's build/sel4/release/prefix) and `aarch64-linux-gnu-gcc` exists;
//! otherwise it says why it is skipped and passes.

use sel4_codegen::header_check::{CC, check_static_asserts, installed_kernel_prefix};
use std::fmt::Write as _;
use std::path::PathBuf;

use vm_runner::fault::{
    cap_fault, label, unknown_syscall, user_exception, vcpu_fault, vgic_maintenance, vm_fault, vppi_event,
};

fn assertions() -> (String, usize) {
    let pairs: Vec<(&str, u64)> = vec![
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
    ];
    let mut c = String::from("#include <sel4/sel4.h>\n");
    for (name, v) in &pairs {
        writeln!(c, "_Static_assert({name} == {v}, \"{name}\");").unwrap();
    }
    (c, pairs.len())
}

#[test]
fn fault_labels_and_layouts_match_the_installed_headers() {
    let root = match installed_kernel_prefix() {
        Ok(r) => r,
        Err(why) => {
            sel4_codegen::skip::cannot_run(&why);
            return;
        }
    };
    let (text, count) = assertions();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if let Err(e) = check_static_asserts(&root, &work, "fault_check", &text, "seL4_Fault_VMFault == 4") {
        panic!("{e}");
    }
    eprintln!("checked {count} fault numbers against the headers of {} with {CC}", root.display());
}
