//! Device models: each plain state plus functions, no system calls, no kernel types. The VM
//! ([`crate::vm::VmState`]) routes guest accesses and events to them and turns what they say
//! into [`crate::action::Action`]s.

pub mod cfi_flash;
pub mod pl011;
pub mod pl031;
pub mod psci;
pub mod vgic;
pub mod vtimer;
