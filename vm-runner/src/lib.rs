//! Guests on seL4 VCPUs: the pure, kernel-independent part of the VMM.
//!
//! The seam: **`handle_exit` decides; the run loop performs; every device model is plain
//! state plus functions.** A fault message from a vCPU thread is decoded into an [`Exit`]
//! ([`exit`], two-level dispatch: seL4 fault label, then the syndrome's exception class in
//! [`esr`]); [`VmState::handle_exit`] turns it into an [`Action`] ([`action`]): what the
//! exiting vCPU does next and which side effects (interrupt injections, acknowledgements,
//! vCPUs to start, wake or suspend) the run loop performs, with their exact cost in kernel
//! entries ([`Action::ops`]; the reasoning is in [`action`]'s docs). Device models live in
//! [`devices`]: a PL011 UART, a GICv2 distributor with a list-register model, PSCI 1.0 and
//! the virtual timer; [`mmio`] maps guest-physical windows to them.
//!
//! Nothing here issues a system call or holds a capability: every module runs under
//! `cargo test` on the host. The run loop that performs actions through the `sel4::Kernel`
//! trait is the only part that touches the kernel.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod action;
pub mod badge;
pub mod console;
pub mod counters;
pub mod devices;
pub mod esr;
pub mod exit;
pub mod fault;
pub mod fdt;
pub mod inject;
pub mod linux;
pub mod logonce;
pub mod mmio;
pub mod vm;

pub use action::{Action, Effects, Next, Notice, StopReason};
pub use badge::VcpuBadge;
pub use counters::{Counters, ExitKind};
pub use exit::{Exit, decode_fault};
pub use vm::{Platform, VmState};
