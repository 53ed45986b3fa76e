//! AArch64 with the virtualization extensions, as seL4's VCPU presents them: the exception
//! syndrome ([`esr`], the second level of fault dispatch after the seL4 fault label), taking
//! an exception into the guest's EL1 ([`inject`]), the GICv2 or GICv3 distributor (and GICv3
//! redistributors) and list registers ([`vgic`]), PSCI 1.0 ([`psci`]) and the virtual timer ([`vtimer`]).
//!
//! Plain state and functions: no system calls, no kernel types.

pub mod esr;
pub mod inject;
pub mod psci;
pub mod vgic;
pub mod vtimer;
