//! Guests on seL4 VCPUs: the pure, kernel-independent part of the VMM.
//!
//! The seam: **`handle_exit` decides; the run loop performs; every device model is plain
//! state plus functions.** A fault message from a vCPU thread is decoded into an [`Exit`]
//! ([`exit`], two-level dispatch: seL4 fault label, then the syndrome's exception class in
//! [`esr`]); [`VmState::handle_exit`] turns it into an [`Action`] ([`action`]): what the
//! exiting vCPU does next and which side effects (interrupt injections, acknowledgements,
//! vCPUs to start, wake or suspend) the run loop performs, with their exact cost in kernel
//! entries ([`Action::ops`]; the reasoning is in [`action`]'s docs). Device models live in
//! [`devices`]: a PL011 UART, a GICv2 distributor with a list-register model, PSCI 1.0, the
//! virtual timer, CFI NOR flash and a PL031 real-time clock; [`mmio`] maps guest-physical
//! windows to them. [`console`] shares one terminal between the VMs (focus, keys, lines).
//!
//! Nothing in those modules issues a system call or holds a capability. The parts that do
//! are generic over the `sel4::Kernel` trait and the HAL, so they run under `cargo test` on
//! the seL4 model as on the board:
//! - [`setup`] builds VMs: guest memory through the HAL, the stage-2 VSpace mirrored from
//!   the stage-2 book ([`book`]), vCPU threads, the fault endpoint;
//! - [`run`] is the run loop: fault in, [`VmState::handle_exit`], action performed with the
//!   fewest kernel entries, counters measured per exit kind;
//! - [`bundle`] is the byte format that carries a system's configuration and guest images
//!   into the root task;
//! - `host` (feature `host`) backs the book's tables with host memory for the model.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod action;
pub mod badge;
pub mod book;
pub mod bundle;
pub mod console;
pub mod counters;
pub mod devices;
pub mod esr;
pub mod exit;
pub mod fdt;
#[cfg(any(test, feature = "host"))]
pub mod host;
pub mod inject;
pub mod linux;
pub mod logonce;
pub mod meter;
pub mod mmio;
pub mod run;
pub mod setup;
pub mod vm;

pub use action::{Action, Effects, FlashRom, Next, Notice, StopReason};
pub use badge::VcpuBadge;
pub use counters::{Counters, ExitKind};
pub use exit::{Exit, decode_fault};
pub use vm::{Platform, UntouchedFrame, VmState};
