//! VM configuration for capvisor.
//!
//! The input is axvisor's VM configuration format (the `axvmconfig` 0.2 layout that axvisor's
//! own `configs/vms/*.toml` use): `[base]`, `[kernel]` with `memory_regions`, `[devices]` with
//! `emu_devices`, `passthrough_devices`, `passthrough_addresses`, `excluded_devices` and
//! `interrupt_mode`. What capvisor needs and axvisor's format lacks lives in one extra table,
//! `[capvisor]`, which axvisor's own parser (0.2) ignores. A capvisor *system* file lists the
//! VM files to run together (`[system] vms = [...]`).
//!
//! The crate owns three things, in three layers:
//! - [`model`]: the compact, checked form ([`VmConfig`], [`SystemConfig`]): plain `no_std`
//!   structs with typed addresses;
//! - [`check`]: every rule a configuration must satisfy, in `no_std` code, so that the host
//!   tool and the root task run the same checks; [`place`] checks where the VMs sit in
//!   host-physical memory, against the platform predicted before boot or read from the real
//!   bootinfo, with the same rules on both sides;
//! - [`codec`]: a small hand-written byte encoding of the compact form (the root task embeds
//!   the bytes and decodes them; the decoder never trusts a length);
//! - `parse` (feature `std`): TOML to [`VmConfig`], every error naming file, line, column and
//!   field.
//!
//! It never touches the kernel: nothing here issues a system call.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod check;
pub mod codec;
pub mod model;
#[cfg(feature = "std")]
pub mod parse;
pub mod place;

pub use addr::{GuestPhysAddr, GuestRange};
pub use check::{Field, Part, Problem, ProblemKind};
pub use codec::{DecodeError, LoadError, decode_system, encode_system, load_system};
pub use model::{
    CapvisorOptions, EmulatedDevice, EmulatedKind, FlashImage, GICR_BYTES_PER_CPU, GicVersion, Image, InterruptMode,
    MapType, MemFlags, MemRegion, OnReset, PassthroughDevice, PassthroughRegion, PopulateRam, SystemConfig,
    UnhandledMmio, VmConfig,
};
#[cfg(feature = "std")]
pub use parse::{
    ConfigError, ConfigErrors, ErrorKind, check_placement_file, parse_system_file, parse_system_str, parse_vm_file,
    parse_vm_str,
};
pub use place::{Facts, HostMemory, PlaceKind, PlaceProblem, check_placement};
