//! seL4 16.0.0 fault labels and fault message layouts, AArch64 with hypervisor support.
//!
//! These are ABI numbers of the kernel capvisor is built for. They come from libsel4's
//! generated `sel4/sel4_arch/types_gen.h` (`enum seL4_Fault_tag`), `sel4/shared_types.h`
//! (`seL4_CapFault_*`) and `sel4/sel4_arch/constants.h` (`seL4_VMFault_*`,
//! `seL4_UnknownSyscall_*`, `seL4_UserException_*`, `seL4_VGICMaintenance_*`,
//! `seL4_VPPIEvent_*`, `seL4_VCPUFault_*`); the interface XML that `sel4` generates from has
//! none of them. `tests/installed_headers.rs` compiles every number here against the headers
//! of an installed kernel, so they cannot go stale silently.

/// Fault labels: the label of the message a fault handler receives.
pub mod label {
    /// `seL4_Fault_NullFault`: not a fault (a plain message or a notification).
    pub const NULL_FAULT: u64 = 0;
    /// `seL4_Fault_CapFault`.
    pub const CAP_FAULT: u64 = 1;
    /// `seL4_Fault_UnknownSyscall`: for a VCPU thread, a guest `HVC` (see [`super::unknown_syscall`]).
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_VMFault`: a stage-2 abort for a VCPU thread.
    pub const VM_FAULT: u64 = 5;
    /// `seL4_Fault_VGICMaintenance`.
    pub const VGIC_MAINTENANCE: u64 = 6;
    /// `seL4_Fault_VCPUFault`: any other trap to EL2, with its ESR.
    pub const VCPU_FAULT: u64 = 7;
    /// `seL4_Fault_VPPIEvent`: a virtual PPI (the virtual timer) fired.
    pub const VPPI_EVENT: u64 = 8;
}

/// `seL4_VMFault_Msg`.
pub mod vm_fault {
    /// Faulting PC.
    pub const IP: usize = 0;
    /// Faulting address; for a VCPU thread the kernel translates the guest VA through stage 1,
    /// so this is the IPA (guest-physical address).
    pub const ADDR: usize = 1;
    /// 1 for an instruction abort, 0 for a data abort.
    pub const PREFETCH_FAULT: usize = 2;
    /// The fault status: at EL2 the whole `ESR_EL2`.
    pub const FSR: usize = 3;
    /// Message length.
    pub const LENGTH: usize = 4;
}

/// `seL4_UnknownSyscall_Msg`. The reply (label 0) writes back, in this order, as many of
/// X0-X7, FaultIP, SP, LR and SPSR as it has words, and resumes the thread at FaultIP.
pub mod unknown_syscall {
    /// `x0`; `x1`..`x7` follow at 1..7.
    pub const X0: usize = 0;
    /// `x7`.
    pub const X7: usize = 7;
    /// Address of the `HVC`/`SVC` instruction (the kernel subtracts 4 from `ELR`).
    pub const FAULT_IP: usize = 8;
    /// `SP_EL0`.
    pub const SP: usize = 9;
    /// `ELR_EL1` as the thread's context holds it.
    pub const LR: usize = 10;
    /// The saved PSTATE.
    pub const SPSR: usize = 11;
    /// The system call number the kernel saw (`x7`).
    pub const SYSCALL: usize = 12;
    /// Message length.
    pub const LENGTH: usize = 13;
    /// Words of a reply that sets X0-X7 and FaultIP.
    pub const REPLY_LENGTH: usize = FAULT_IP + 1;
}

/// `seL4_UserException_Msg`.
pub mod user_exception {
    /// Faulting PC.
    pub const FAULT_IP: usize = 0;
    /// `SP_EL0`.
    pub const SP: usize = 1;
    /// The saved PSTATE.
    pub const SPSR: usize = 2;
    /// Exception number (for a VCPU thread's unknown-reason trap: the ESR).
    pub const NUMBER: usize = 3;
    /// Exception code.
    pub const CODE: usize = 4;
    /// Message length.
    pub const LENGTH: usize = 5;
}

/// `seL4_VGICMaintenance_Msg`.
pub mod vgic_maintenance {
    /// The list register whose interrupt the guest EOIed, or -1 (all ones) if the kernel
    /// could not tell.
    pub const IDX: usize = 0;
    /// Message length.
    pub const LENGTH: usize = 1;
}

/// `seL4_VPPIEvent_Msg`.
pub mod vppi_event {
    /// The PPI's interrupt ID (27 for the virtual timer).
    pub const IRQ: usize = 0;
    /// Message length.
    pub const LENGTH: usize = 1;
}

/// `seL4_VCPUFault_Msg`.
pub mod vcpu_fault {
    /// `ESR_EL2` of the trap.
    pub const HSR: usize = 0;
    /// Message length.
    pub const LENGTH: usize = 1;
}

/// `seL4_CapFault_Msg` (the part capvisor reads).
pub mod cap_fault {
    /// Restart PC.
    pub const IP: usize = 0;
    /// The capability address that failed to resolve.
    pub const ADDR: usize = 1;
    /// Whether the fault happened in the receive phase.
    pub const IN_RECV_PHASE: usize = 2;
    /// The lookup failure type.
    pub const LOOKUP_FAILURE_TYPE: usize = 3;
    /// Words capvisor needs (the kernel sends more, depending on the failure type).
    pub const MIN_LENGTH: usize = 4;
}
