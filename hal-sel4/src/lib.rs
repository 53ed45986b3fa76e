//! `AxVMHal` implemented as a client of seL4 capabilities: untyped pool, capability table,
//! time by IPC.
//!
//! Layers, bottom up; each module's docs say what it owns:
//! - [`plan`]: pure arithmetic of padding, blocks, frames and the lower bound;
//! - [`ranges`]: slot and virtual-range allocators;
//! - [`pool`]: the untyped tree: objects at exact physical addresses, and back;
//! - [`table`]: frame capabilities by physical and by virtual address;
//! - [`window`]: the root-task virtual range the HAL maps into, with its translation tables;
//! - [`time`]: the timer-server protocol and client;
//! - [`hal`]: [`Sel4Hal`] (all state, generic over [`sel4::Kernel`]) and [`GlobalHal`] (the
//!   `AxVMHal` implementation over one installed instance);
//! - `objects`: `vm_objects::VmObjects` (the VM layer's other trait) for [`GlobalHal`] and,
//!   on the host, [`host::HostHal`];
//! - [`host`] (feature `host`): the same HAL over the seL4 model with page-table frames
//!   backed by host memory, for `capvisor plan` and the VM layer's tests.
//!
//! Everything is plain `no_std` Rust with no `unsafe`, tested on the host against the seL4
//! model.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod hal;
#[cfg(feature = "host")]
pub mod host;
mod objects;
pub mod plan;
pub mod pool;
pub mod ranges;
pub mod table;
pub mod time;
pub mod window;

pub use hal::{GlobalHal, GlobalPaging, HalCell, HalConfig, HalError, HalInstance, Sel4Hal};
pub use pool::{AllocError, FreeError, KindRequest, MemoryKind, Purpose};
pub use vm_objects::Objects;
