//! Guests on seL4 VCPUs: the pure, kernel-independent part of the VMM.
//!
//! The seam: **`handle_exit` decides; the run loop performs; every device model is plain
//! state plus functions.** A fault message from a vCPU thread is decoded into an [`Exit`]
//! ([`exit`], two-level dispatch: seL4 fault label, then the syndrome's exception class in
//! [`esr`]); [`VmState::handle_exit`] turns it into an [`Action`] ([`action`]): what the
//! exiting vCPU does next and which side effects (interrupt injections, acknowledgements,
//! vCPUs to start, wake or suspend) the run loop performs, with their exact cost in kernel
//! entries ([`Action::ops`]; the reasoning is in [`action`]'s docs). Device models live in
//! [`devices`]: a PL011 UART, a GICv2 distributor or a GICv3 distributor and redistributors
//! over one list-register model, PSCI 1.0, the
//! virtual timer, CFI NOR flash and a PL031 real-time clock; [`mmio`] maps guest-physical
//! windows to them. [`console`] shares one terminal between the VMs (focus, keys, lines).
//!
//! Nothing in those modules issues a system call or holds a capability. The parts that do
//! are generic over the HAL seam, the seed's `AxVMHal` plus vm-runner's `VmObjects` (crate
//! `vm-objects`; no HAL implementation is a dependency), so they run under `cargo test` on
//! the seL4 model, with capvisor's HAL or the tests' second one, as on the board:
//! - [`plan`] is the pure plan of a VM (frames, tables, images, cache operations, objects,
//!   vCPUs, and the invocations they take);
//! - [`setup`] executes it: guest memory through the HAL, the stage-2 VSpace mirrored from
//!   the stage-2 book ([`book`]), vCPU threads, the fault endpoint; and rebuilds a VM after
//!   a reset;
//! - [`run`] is the run loop: fault in, [`VmState::handle_exit`], action performed with the
//!   fewest kernel entries, counters measured per exit kind; it borrows the kernel for each
//!   invocation, so nothing is held while an exit is handled;
//! - [`bundle`] is the byte format that carries a system's configuration and guest images
//!   into the root task;

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod action;
pub mod arch;
pub mod badge;
pub mod book;
pub mod bundle;
pub mod console;
pub mod counters;
pub mod devices;
pub mod exit;
pub mod fdt;
pub mod linux;
#[cfg(test)]
mod local_paging;
pub mod logonce;
pub mod meter;
pub mod mmio;
pub mod plan;
pub mod run;
#[cfg(test)]
mod seam_tests;
pub mod setup;
pub mod vm;

// The architecture's modules where the rest of the crate (and its users) name them.
pub use action::{Action, Effects, FlashRom, Next, Notice, StopReason};
pub use arch::aarch64::{esr, inject};
pub use badge::VcpuBadge;
pub use counters::{Counters, ExitKind};
pub use exit::{Exit, decode_fault};
pub use vm::{Platform, UntouchedFrame, VmState};
