//! Time by IPC on seL4: the timer protocol, the counter arithmetic, the timer server and its
//! set-up, and the client.
//!
//! The root task and the VMM ask a *timer server* for the time and for timeouts, instead of
//! reading or programming timer hardware themselves. The server is a native seL4 thread with
//! its own TCB, stack, IPC buffer, endpoint and a small CNode of its own; every client holds
//! an endpoint capability with a badge of its own. `now` is one `seL4_Call`.
//!
//! Layers, bottom up; each module's docs say what it owns:
//! - [`clock`]: ticks to nanoseconds and back, without overflow, for any counter frequency;
//!   counter wrap; the compare value that arms a deadline;
//! - [`protocol`]: labels, words and error codes on the wire, encoders and decoders;
//! - [`timeouts`]: the table of one-shot timeouts, per client and id;
//! - [`server`]: the pure decision function ([`server::Core`]: message in, reply and kernel
//!   actions out) and the loop that performs the actions ([`server::Server`]);
//! - [`setup`]: creating the server thread, its CNode, the *ticker* (a VCPU thread whose
//!   virtual timer delivers timeouts) and client capabilities, generic over [`sel4::Kernel`];
//! - [`client`]: the client side of the protocol.
//!
//! Why a VCPU "ticker" delivers timeouts, and what that costs, is in [`server`] and in the
//! README's "Time" section.
//!
//! Everything is plain `no_std` Rust with no `unsafe`, tested on the host against the seL4
//! model; the root task supplies the two target-only pieces (the counter read and the thread
//! entry) in `root-task/src/timer.rs`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod client;
pub mod clock;
pub mod protocol;
pub mod server;
pub mod setup;
pub mod timeouts;

pub use client::{ClientError, TimerClient};
pub use clock::{Clock, Frequency};
pub use server::{Core, Counter, Server};

// The kernel options this design relies on, checked when the crate is built against the
// kernel at `$SEL4_PREFIX` (the `sel4` crate generates `sel4::config` from it).
const _: () = assert!(
    sel4::config::ARM_HYPERVISOR_SUPPORT,
    "timer-server needs KernelArmHypervisorSupport ON (ARM_HYPERVISOR_SUPPORT): timeouts come from a VCPU's virtual timer"
);
const _: () = assert!(
    sel4::config::EXPORT_PCNT_USER,
    "timer-server needs KernelArmExportPCNTUser ON (EXPORT_PCNT_USER): the server reads CNTPCT_EL0 and CNTFRQ_EL0 at EL0"
);
const _: () = assert!(
    !sel4::config::EXPORT_PTMR_USER,
    "timer-server needs KernelArmExportPTMRUser OFF (EXPORT_PTMR_USER): with it on, every thread and guest could program \
     the EL1 physical timer (CNTHCTL_EL2.EL1PCEN = 1) and the server's timeouts would not be its own"
);
const _: () = assert!(
    !sel4::config::EXPORT_VTMR_USER,
    "timer-server needs KernelArmExportVTMRUser OFF (EXPORT_VTMR_USER): with it on, native threads could program the \
     virtual timer that the kernel switches between VCPUs, the ticker's included"
);
const _: () = assert!(
    !sel4::config::VTIMER_UPDATE_VOFFSET,
    "timer-server needs KernelArmVtimerUpdateVOffset OFF (VTIMER_UPDATE_VOFFSET): with it on, the kernel moves the \
     ticker's CNTVOFF by the time it was not running, and compare values in counter ticks would fire late"
);
const _: () = assert!(!sel4::config::KERNEL_MCS, "timer-server speaks the non-MCS ABI (KernelIsMCS OFF)");
