//! capvisor's seL4 bindings, for seL4 16.0.0 on AArch64 with hypervisor support.
//!
//! Layers, as in rust-sel4:
//! - [`sys`]: raw system calls and the IPC buffer (target only);
//! - [`invocation`]: invocation labels and message encoders generated at build time from the
//!   interface XML of the kernel at `$SEL4_PREFIX`, for the configuration actually built;
//! - typed capabilities ([`Cap`]), the [`Error`] enum, object types and sizes, bootinfo;
//! - [`fault`]: fault labels and message layouts generated from the kernel's C headers, and
//!   [`Fault`], a fault message decoded;
//! - the [`Kernel`] trait, implemented here by [`RealKernel`] (target) and on the host by
//!   `sel4-model`.
//!
//! Everything but the system calls builds on the host, so the layers above are tested there.

#![no_std]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

#[cfg(feature = "alloc")]
extern crate alloc;

/// Output of the build script: kernel configuration, object types and sizes, system call
/// numbers, invocation labels and encoders, fault labels and layouts, all for the kernel at
/// `$SEL4_PREFIX`.
#[allow(missing_docs, clippy::all)]
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}

pub mod addr;
pub mod bootinfo;
pub mod cap;
pub mod error;
pub mod fault;
pub mod invocation;
pub mod kernel;
pub mod message_info;
pub mod object;
pub mod observe;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod real;
pub mod sys;

pub use addr::{PhysAddr, VirtAddr};
pub use bootinfo::{BootInfo, UntypedDesc, init_cap};
pub use cap::{CPtr, Cap, CapRights, CapType, Slot, SlotRegion, VmAttributes, cap_type};
pub use error::{Error, Result};
pub use fault::{Fault, FaultError};
pub use generated::config;
pub use kernel::{CNodeSlot, CacheOp, Kernel, Message, Op, Received, UserContext, VCpuReg};
pub use message_info::MessageInfo;
pub use object::{FrameSize, ObjectBlueprint};
pub use observe::{Lend, Lent, Observed, Observer, OpCounts};
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use real::RealKernel;
