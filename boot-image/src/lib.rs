//! Boot image format, ELF placement and the loader's page tables, shared by the loader
//! (`no_std`, reads) and the `capvisor image` tool (`alloc`/`std`, writes and checks).
//!
//! # How the loader gets its payload
//!
//! The loader is linked at a fixed physical address (`loader/link.ld`) with its `.bss`,
//! stack and page-table arena inside the image, and ends at the linker symbol
//! `__payload_start`, the first 4 KiB boundary after everything it uses. `capvisor image`
//! reads the loader ELF, lays its `PT_LOAD` segments out flat from the lowest physical
//! address (zero-filling `.bss`), pads to `__payload_start` (computed the same way from the
//! segments: the end of the last one, rounded up to 4 KiB) and appends the payload
//! ([`payload`]). The result is written twice:
//!
//! - `OUT`: an ELF64 AArch64 executable for QEMU's `-kernel` (entry: the loader's
//!   `_start`). Its first `PT_LOAD` is the flat loader with a payload that holds the copy
//!   table but not the segment bytes; every kernel and root-task segment follows as its own
//!   `PT_LOAD` at its final physical address, where QEMU's ELF loader puts it (copies "in
//!   place"), so the loader does not copy tens of megabytes;
//! - `OUT.bin`: the flat loader with a payload that carries the segment bytes, to be loaded
//!   at the loader's link address (the tool prints it) and entered at its first byte, e.g.
//!   U-Boot `load ... <addr> image.bin; go <addr>`; the loader copies the segments.
//!
//! The payload carries no ELF files: the tool has already placed every segment ([`plan`]),
//! so the loader only checks the payload, checks each segment's bytes where they are
//! ([`checksum`]), copies those that travel in the payload, zero-fills, finds the device
//! tree, builds its page tables ([`pagetable`]) and jumps.
//!
//! # Where the loader finds the device tree
//!
//! In order: a DTB packed into the payload (`capvisor image --dtb`); the address in `x0` if
//! it holds an FDT header (firmware that follows the Linux arm64 convention); the probe
//! address in the payload (QEMU loads the DTB at the base of RAM when `-kernel` is an ELF
//! and leaves `x0` zero; the tool takes that address from the platform's DTB memory node).
//! None of them: the loader prints why and halts.
//!
//! Owns: formats, placement rules and their errors. Never touches: hardware.
#![cfg_attr(not(test), no_std)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

use core::fmt;

pub mod checksum;
pub mod elf;
pub mod fdt;
#[cfg(any(test, feature = "std"))]
pub mod kconfig;
pub mod pagetable;
pub mod payload;
#[cfg(any(test, feature = "alloc"))]
pub mod plan;

pub use elf::{Elf, ElfError};
pub use fdt::FdtError;
pub use pagetable::PageTableError;
pub use payload::PayloadError;

/// A physical address range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}..{:#x})", self.start, self.end)
    }
}

/// Which input file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Image {
    /// The seL4 kernel ELF.
    Kernel,
    /// The root task ELF.
    RootTask,
    /// The loader ELF.
    Loader,
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Image::Kernel => "kernel ELF",
            Image::RootTask => "root-task ELF",
            Image::Loader => "loader ELF",
        })
    }
}

/// What a placed region is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    /// A kernel `PT_LOAD` segment (program header index).
    KernelSegment(usize),
    /// A root task `PT_LOAD` segment at its placed physical address.
    RootTaskSegment(usize),
    /// The root task's whole page-rounded image.
    RootTaskImage,
    /// The slot reserved for the device tree.
    DtbSlot,
    /// The loader with its payload.
    Loader,
    /// Where the firmware leaves the device tree.
    DtbSource,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::KernelSegment(i) => write!(f, "kernel ELF segment {i}"),
            Part::RootTaskSegment(i) => write!(f, "root-task ELF segment {i}"),
            Part::RootTaskImage => write!(f, "root-task image"),
            Part::DtbSlot => write!(f, "DTB slot"),
            Part::Loader => write!(f, "loader and payload"),
            Part::DtbSource => write!(f, "firmware DTB"),
        }
    }
}

/// A placed region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    /// What it is.
    pub part: Part,
    /// Where.
    pub range: PhysRange,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.part, self.range)
    }
}

/// Why a boot image cannot be made or booted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// An input ELF is unusable.
    Elf {
        /// Which file.
        image: Image,
        /// What is wrong.
        err: ElfError,
    },
    /// A region lies outside the platform's RAM.
    OutsideRam {
        /// The region.
        region: Region,
    },
    /// Two regions overlap.
    Overlap {
        /// The first.
        a: Region,
        /// The second.
        b: Region,
    },
    /// The device tree does not fit its slot.
    DtbTooLarge {
        /// Bytes of the DTB.
        size: u64,
        /// Bytes of the slot.
        max: u64,
    },
    /// The device tree is malformed.
    Dtb(FdtError),
    /// An entry point outside the image's loadable segments.
    EntryOutside {
        /// Which file.
        image: Image,
        /// `e_entry`.
        entry: u64,
    },
    /// Kernel segments with different `vaddr - paddr` offsets.
    KernelOffsetMismatch {
        /// Program header index of the first that differs.
        index: usize,
    },
    /// The platform lists no RAM.
    NoRam,
    /// More RAM ranges than the payload holds.
    TooManyRamRanges {
        /// Ranges given.
        count: usize,
        /// Ranges the payload holds.
        max: usize,
    },
    /// The kernel is built for more cores than the loader starts (or none).
    Cores {
        /// The kernel's `MAX_NUM_NODES`.
        cores: u64,
        /// The most the loader starts.
        max: u64,
    },
    /// The payload is unusable.
    Payload(PayloadError),
    /// The loader's page tables cannot be built.
    PageTable(PageTableError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Elf { image, err } => write!(f, "{image}: {err}"),
            Error::OutsideRam { region } => write!(f, "{region} is outside RAM"),
            Error::Overlap { a, b } => write!(f, "{a} overlaps {b}"),
            Error::DtbTooLarge { size, max } => {
                write!(f, "device tree: {size} bytes, the DTB slot holds {max} (raise --dtb-max)")
            }
            Error::Dtb(e) => e.fmt(f),
            Error::EntryOutside { image, entry } => {
                write!(f, "{image}: e_entry {entry:#x} is outside its loadable segments")
            }
            Error::KernelOffsetMismatch { index } => {
                write!(f, "kernel ELF: program header {index} has a different p_vaddr - p_paddr than segment 0")
            }
            Error::NoRam => write!(f, "platform: no memory regions"),
            Error::TooManyRamRanges { count, max } => {
                write!(f, "platform: {count} memory regions, the boot image holds {max}")
            }
            Error::Cores { cores, max } => {
                write!(f, "kernel: MAX_NUM_NODES is {cores}, the loader starts 1 to {max} cores")
            }
            Error::Payload(e) => e.fmt(f),
            Error::PageTable(e) => e.fmt(f),
        }
    }
}

#[cfg(any(test, feature = "std"))]
extern crate std;
#[cfg(any(test, feature = "std"))]
impl std::error::Error for Error {}
