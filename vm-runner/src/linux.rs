//! The Linux arm64 boot protocol (the kernel's `Documentation/arch/arm64/booting.rst`): the
//! `Image` header and where the kernel, its initrd and its device tree may go.
//!
//! Owns: reading the 64-byte header of an arm64 `Image`, and checking a VM's placement of
//! the kernel, initrd and DTB against it and against guest RAM, so that a kernel that cannot
//! boot is refused with a reason before a vCPU runs instead of failing silently in the guest.
//! What the protocol requires, and what is checked here:
//!
//! - the `Image` is loaded at a 2 MiB-aligned base plus the header's `text_offset`, and the
//!   header's `image_size` bytes from there (the file *and* the BSS and early page tables
//!   after it) lie in RAM and overlap nothing else that is loaded;
//! - the device tree is 8-byte aligned, at most 2 MiB, in RAM, overlapping nothing;
//! - the initrd is in RAM, overlapping nothing (its range goes into the DTB's `/chosen`);
//! - the primary CPU enters at the load address with `x0` = the DTB's address, `x1`-`x3` =
//!   0, at EL1h with D, A, I and F masked and the MMU off ([`LinuxBoot::start`]; the run loop
//!   writes that register file, and a vCPU's `SCTLR_EL1` starts with the MMU off).
//!
//! Never touches: guest memory or the kernel. It reads bytes it is given and does arithmetic
//! on addresses; every error is a value (this runs on the target too, on bytes from a file).

use core::fmt;

use vm_config::{GuestPhysAddr, GuestRange, VmConfig};

use crate::action::VcpuStart;

/// Bytes of the `Image` header.
pub const HEADER_SIZE: usize = 64;
/// `"ARM\x64"`, little-endian, at [`MAGIC_OFFSET`].
pub const MAGIC: u32 = 0x644d_5241;
/// Where the magic is.
pub const MAGIC_OFFSET: usize = 0x38;
/// The kernel's base (load address minus `text_offset`) is aligned to this.
pub const KERNEL_ALIGN: u64 = 2 << 20;
/// The largest device tree the kernel maps.
pub const DTB_MAX_BYTES: u64 = 2 << 20;
/// A device tree's alignment.
pub const DTB_ALIGN: u64 = 8;
/// `text_offset` a kernel before 3.17 (`image_size` = 0) is assumed to have.
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// The kernel's byte order (`flags` bit 0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endian {
    /// Little-endian: what capvisor runs (its MMIO emulation assumes it).
    Little,
    /// Big-endian.
    Big,
}

/// The kernel's page size (`flags` bits 1-2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageSize {
    /// 0: not stated (kernels before 3.17).
    Unspecified,
    /// 1: 4 KiB.
    Size4K,
    /// 2: 16 KiB.
    Size16K,
    /// 3: 64 KiB.
    Size64K,
}

/// Where the kernel's 2 MiB-aligned base may be (`flags` bit 3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// 0: as close as possible to the base of RAM (memory below it is not in the kernel's
    /// linear map).
    NearRamBase,
    /// 1: anywhere in physical memory.
    Anywhere,
}

/// The fields of an arm64 `Image` header that decide where it goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageHeader {
    /// Offset of the load address above a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes from the load address the kernel uses: file plus BSS (from 3.17; for an older
    /// kernel, the file's size, which understates it).
    pub image_size_bytes: u64,
    /// Byte order.
    pub endian: Endian,
    /// Page size.
    pub page_size: PageSize,
    /// Placement of the base.
    pub placement: Placement,
    /// Whether the header is a pre-3.17 one (`image_size` 0: no flags, `text_offset`
    /// assumed [`LEGACY_TEXT_OFFSET`]).
    pub legacy: bool,
}

/// Which of the loaded things an error is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    /// The kernel `Image` (its whole `image_size`).
    Kernel,
    /// The initrd.
    Initrd,
    /// The device tree.
    Dtb,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Kernel => "kernel image",
            Part::Initrd => "initrd",
            Part::Dtb => "device tree",
        })
    }
}

/// Why a kernel cannot boot as configured.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LinuxError {
    /// Fewer bytes than a header.
    TooShort(usize),
    /// No `ARM\x64` at 0x38: not an arm64 `Image` (perhaps still compressed, or an ELF
    /// `vmlinux`).
    BadMagic(u32),
    /// The header sets bits the protocol reserves (a newer protocol than this reader).
    ReservedFlags(u64),
    /// A big-endian kernel.
    BigEndian,
    /// The file is larger than the `image_size` it declares.
    FileLargerThanImage {
        /// File bytes.
        file: u64,
        /// Declared `image_size`.
        image_size: u64,
    },
    /// The load address is not a 2 MiB-aligned base plus `text_offset`.
    Misplaced {
        /// The configured load address.
        load: u64,
        /// The header's `text_offset`.
        text_offset: u64,
    },
    /// The entry point is not the load address.
    EntryNotLoadAddress {
        /// The configured entry point.
        entry: u64,
        /// The load address.
        load: u64,
    },
    /// A part does not lie inside one RAM region.
    OutsideRam {
        /// Which.
        part: Part,
        /// Its range.
        range: GuestRange,
    },
    /// Two parts overlap.
    Overlap {
        /// One.
        a: Part,
        /// The other.
        b: Part,
    },
    /// The device tree is not 8-byte aligned.
    DtbMisaligned(u64),
    /// The device tree is larger than 2 MiB.
    DtbTooLarge(u64),
    /// The kernel asks for its base near the start of RAM, and RAM below it would be lost.
    NotNearRamBase {
        /// The kernel's 2 MiB-aligned base.
        base: u64,
        /// The start of the RAM region holding it.
        ram_base: u64,
    },
    /// No device tree address: Linux needs one in `x0`.
    NoDtb,
    /// An address or size overflows 64 bits.
    Overflow(Part),
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxError::TooShort(n) => write!(f, "{n} bytes: shorter than the {HEADER_SIZE}-byte arm64 Image header"),
            LinuxError::BadMagic(m) => write!(
                f,
                "no arm64 Image magic (\"ARM\\x64\") at {MAGIC_OFFSET:#x} (found {m:#010x}): is it compressed (vmlinuz) or an ELF vmlinux?"
            ),
            LinuxError::ReservedFlags(fl) => write!(f, "header flags {fl:#x} set reserved bits 4-63"),
            LinuxError::BigEndian => {
                f.write_str("a big-endian kernel (flags bit 0); capvisor runs little-endian guests")
            }
            LinuxError::FileLargerThanImage { file, image_size } => {
                write!(f, "the file ({file:#x} bytes) is larger than the header's image_size ({image_size:#x})")
            }
            LinuxError::Misplaced { load, text_offset } => {
                write!(f, "load address {load:#x} is not a 2 MiB-aligned base plus text_offset {text_offset:#x}")
            }
            LinuxError::EntryNotLoadAddress { entry, load } => {
                write!(f, "entry point {entry:#x} is not the kernel's load address {load:#x}")
            }
            LinuxError::OutsideRam { part, range } => write!(f, "the {part} ({range}) is not inside one RAM region"),
            LinuxError::Overlap { a, b } => write!(f, "the {a} overlaps the {b}"),
            LinuxError::DtbMisaligned(a) => write!(f, "device tree address {a:#x} is not 8-byte aligned"),
            LinuxError::DtbTooLarge(n) => write!(f, "device tree of {n:#x} bytes is larger than 2 MiB"),
            LinuxError::NotNearRamBase { base, ram_base } => write!(
                f,
                "the kernel wants its base near the start of RAM (flags bit 3 clear): base {base:#x} leaves RAM from {ram_base:#x} unusable"
            ),
            LinuxError::NoDtb => f.write_str("no device tree (kernel.dtb_load_addr): Linux needs one in x0"),
            LinuxError::Overflow(p) => write!(f, "the {p}'s address range overflows 64 bits"),
        }
    }
}

impl core::error::Error for LinuxError {}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

impl ImageHeader {
    /// Reads the header at the start of an `Image` (`bytes` may be the whole file or only
    /// its first [`HEADER_SIZE`] bytes; `file_len` is the whole file's length).
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Self, LinuxError> {
        if bytes.len() < HEADER_SIZE {
            return Err(LinuxError::TooShort(bytes.len()));
        }
        let magic = le_u32(bytes, MAGIC_OFFSET);
        if magic != MAGIC {
            return Err(LinuxError::BadMagic(magic));
        }
        let text_offset = le_u64(bytes, 8);
        let image_size = le_u64(bytes, 16);
        let flags = le_u64(bytes, 24);
        if image_size == 0 {
            // Before 3.17: flags and image_size are not there; the file is all we know.
            return Ok(ImageHeader {
                text_offset: LEGACY_TEXT_OFFSET,
                image_size_bytes: file_len,
                endian: Endian::Little,
                page_size: PageSize::Unspecified,
                placement: Placement::NearRamBase,
                legacy: true,
            });
        }
        if flags >> 4 != 0 {
            return Err(LinuxError::ReservedFlags(flags));
        }
        let endian = if flags & 1 == 0 { Endian::Little } else { Endian::Big };
        let page_size = match (flags >> 1) & 3 {
            0 => PageSize::Unspecified,
            1 => PageSize::Size4K,
            2 => PageSize::Size16K,
            _ => PageSize::Size64K,
        };
        let placement = if flags & (1 << 3) == 0 { Placement::NearRamBase } else { Placement::Anywhere };
        if endian == Endian::Big {
            return Err(LinuxError::BigEndian);
        }
        if file_len > image_size {
            return Err(LinuxError::FileLargerThanImage { file: file_len, image_size });
        }
        Ok(ImageHeader { text_offset, image_size_bytes: image_size, endian, page_size, placement, legacy: false })
    }

    /// The load address for a kernel whose 2 MiB-aligned base is `base`.
    pub fn load_address(&self, base: GuestPhysAddr) -> GuestPhysAddr {
        GuestPhysAddr(base.0.wrapping_add(self.text_offset))
    }
}

/// Where a Linux guest's parts go, checked against its `Image` header and RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LinuxBoot {
    /// The kernel from its load address, `image_size` bytes (BSS included).
    pub kernel: GuestRange,
    /// The initrd, if any (its range goes into `/chosen` as `linux,initrd-start/end`).
    pub initrd: Option<GuestRange>,
    /// The device tree.
    pub dtb: GuestRange,
}

impl LinuxBoot {
    /// Checks `config`'s placement of a kernel with `header`, an initrd of `initrd_len`
    /// bytes (if the configuration has one) and a device tree of `dtb_len` bytes.
    pub fn check(
        config: &VmConfig,
        header: &ImageHeader,
        initrd_len: Option<u64>,
        dtb_len: u64,
    ) -> Result<Self, LinuxError> {
        let load = config.kernel.load_addr.0;
        let Some(base) = load.checked_sub(header.text_offset).filter(|b| b % KERNEL_ALIGN == 0) else {
            return Err(LinuxError::Misplaced { load, text_offset: header.text_offset });
        };
        if config.entry_point.0 != load {
            return Err(LinuxError::EntryNotLoadAddress { entry: config.entry_point.0, load });
        }
        let kernel = GuestRange::new(load, header.image_size_bytes);
        let kernel_ram = ram_holding(config, Part::Kernel, &kernel)?;
        // The kernel maps RAM from its 2 MiB-aligned base up; whatever lies below is lost
        // unless the kernel may sit anywhere.
        if header.placement == Placement::NearRamBase && base.saturating_sub(kernel_ram.base.0) >= KERNEL_ALIGN {
            return Err(LinuxError::NotNearRamBase { base, ram_base: kernel_ram.base.0 });
        }
        let dtb_addr = config.dtb.as_ref().ok_or(LinuxError::NoDtb)?.load_addr.0;
        if dtb_addr % DTB_ALIGN != 0 {
            return Err(LinuxError::DtbMisaligned(dtb_addr));
        }
        if dtb_len > DTB_MAX_BYTES {
            return Err(LinuxError::DtbTooLarge(dtb_len));
        }
        let dtb = GuestRange::new(dtb_addr, dtb_len);
        ram_holding(config, Part::Dtb, &dtb)?;
        let initrd = match (&config.ramdisk, initrd_len) {
            (Some(rd), Some(len)) => {
                let r = GuestRange::new(rd.load_addr.0, len);
                ram_holding(config, Part::Initrd, &r)?;
                Some(r)
            }
            _ => None,
        };
        let mut parts = [(Part::Kernel, Some(kernel)), (Part::Dtb, Some(dtb)), (Part::Initrd, initrd)];
        parts.sort_by_key(|(_, r)| r.map(|r| r.base.0));
        for (i, (a, ra)) in parts.iter().enumerate() {
            for (b, rb) in parts.iter().skip(i + 1) {
                if let (Some(ra), Some(rb)) = (ra, rb)
                    && ra.overlaps(rb)
                {
                    return Err(LinuxError::Overlap { a: *a, b: *b });
                }
            }
        }
        Ok(LinuxBoot { kernel, initrd, dtb })
    }

    /// The primary vCPU's start: at the load address, `x0` = the DTB, `x1`-`x3` = 0, EL1h
    /// with DAIF masked ([`VcpuStart::PSTATE`]).
    pub fn start(&self) -> VcpuStart {
        VcpuStart { vcpu: 0, entry: self.kernel.base.0, context: self.dtb.base.0, reset_sctlr: false }
    }
}

/// The RAM region that holds all of `r`.
fn ram_holding(config: &VmConfig, part: Part, r: &GuestRange) -> Result<GuestRange, LinuxError> {
    r.end().ok_or(LinuxError::Overflow(part))?;
    config
        .memory
        .iter()
        .map(|m| m.range)
        .find(|m| m.contains_span(r.base.0, r.size_bytes))
        .ok_or(LinuxError::OutsideRam { part, range: *r })
}

#[cfg(test)]
mod tests {
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;

    use vm_config::Image;

    use super::*;

    const MIB: u64 = 1 << 20;

    /// A synthetic header: what `arch/arm64/kernel/head.S` emits, with chosen fields.
    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(b"ARM\x64");
        h
    }

    /// Flags of a Debian 6.1 arm64 kernel: little-endian, 4 KiB pages, base anywhere.
    const FLAGS_4K_ANYWHERE: u64 = 0b1010;

    fn vm(ram_base: u64, ram_size: u64, load: u64, dtb: u64, initrd: Option<u64>) -> VmConfig {
        let mut c = VmConfig::minimal(1, "linux", GuestRange::new(ram_base, ram_size), load);
        c.dtb = Some(Image { path: String::new(), load_addr: GuestPhysAddr(dtb) });
        c.ramdisk = initrd.map(|a| Image { path: "initrd".to_string(), load_addr: GuestPhysAddr(a) });
        c
    }

    #[test]
    fn a_debian_style_header_parses() {
        let h = ImageHeader::parse(&header(0, 0x201_0000, FLAGS_4K_ANYWHERE), 0x1f6_e000).unwrap();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size_bytes, 0x201_0000);
        assert_eq!(
            (h.endian, h.page_size, h.placement, h.legacy),
            (Endian::Little, PageSize::Size4K, Placement::Anywhere, false)
        );
    }

    #[test]
    fn page_size_and_placement_bits_decode() {
        for (bits, size) in
            [(0, PageSize::Unspecified), (1, PageSize::Size4K), (2, PageSize::Size16K), (3, PageSize::Size64K)]
        {
            let h = ImageHeader::parse(&header(0, MIB, bits << 1), 4096).unwrap();
            assert_eq!((h.page_size, h.placement), (size, Placement::NearRamBase));
        }
    }

    #[test]
    fn bad_magic_is_refused_with_what_was_found() {
        let mut h = header(0, MIB, 0);
        h[MAGIC_OFFSET] = 0x7f;
        let e = ImageHeader::parse(&h, 4096).unwrap_err();
        assert_eq!(e, LinuxError::BadMagic(0x644d_527f));
        assert!(e.to_string().contains("compressed"), "{e}");
        // A gzip-compressed vmlinuz starts 1f 8b: refused, not misread.
        let mut gz = vec![0u8; 64];
        gz[0..2].copy_from_slice(&[0x1f, 0x8b]);
        assert!(matches!(ImageHeader::parse(&gz, 64), Err(LinuxError::BadMagic(_))));
    }

    #[test]
    fn short_input_is_refused() {
        assert_eq!(ImageHeader::parse(&header(0, MIB, 0)[..63], 63), Err(LinuxError::TooShort(63)));
    }

    #[test]
    fn big_endian_and_reserved_flags_are_refused() {
        assert_eq!(ImageHeader::parse(&header(0, MIB, 0b1011), 4096), Err(LinuxError::BigEndian));
        assert_eq!(ImageHeader::parse(&header(0, MIB, 1 << 4), 4096), Err(LinuxError::ReservedFlags(1 << 4)));
    }

    #[test]
    fn a_file_larger_than_its_image_size_is_refused() {
        assert_eq!(
            ImageHeader::parse(&header(0, MIB, FLAGS_4K_ANYWHERE), MIB + 1),
            Err(LinuxError::FileLargerThanImage { file: MIB + 1, image_size: MIB })
        );
    }

    #[test]
    fn a_pre_3_17_header_gets_the_legacy_text_offset_and_the_file_size() {
        let h = ImageHeader::parse(&header(0x1234, 0, 0xff), 5 * MIB).unwrap();
        assert!(h.legacy);
        assert_eq!((h.text_offset, h.image_size_bytes), (LEGACY_TEXT_OFFSET, 5 * MIB));
        assert_eq!(h.load_address(GuestPhysAddr(0x4000_0000)), GuestPhysAddr(0x4008_0000));
    }

    fn debian() -> ImageHeader {
        ImageHeader::parse(&header(0, 0x201_0000, FLAGS_4K_ANYWHERE), 0x1f6_e000).unwrap()
    }

    #[test]
    fn the_example_layout_is_accepted_and_starts_as_the_protocol_says() {
        let c = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0000, Some(0x4420_0000));
        let b = LinuxBoot::check(&c, &debian(), Some(1_537_110), 0x2000).unwrap();
        assert_eq!(b.kernel, GuestRange::new(0x4000_0000, 0x201_0000));
        assert_eq!(b.initrd, Some(GuestRange::new(0x4420_0000, 1_537_110)));
        let s = b.start();
        let regs = s.registers();
        assert_eq!((regs.pc, regs.x[0], regs.x[1], regs.x[2], regs.x[3]), (0x4000_0000, 0x4400_0000, 0, 0, 0));
        // EL1h (M = 0b0101) with D, A, I, F masked.
        assert_eq!(regs.spsr, 0b1111 << 6 | 0b0101);
    }

    #[test]
    fn the_load_address_must_be_a_2mib_base_plus_text_offset() {
        let c = vm(0x4000_0000, 256 * MIB, 0x4010_0000, 0x4400_0000, None);
        assert_eq!(
            LinuxBoot::check(&c, &debian(), None, 0x2000),
            Err(LinuxError::Misplaced { load: 0x4010_0000, text_offset: 0 })
        );
        // With text_offset 0x80000, base + 0x80000 is right and the 2 MiB base alone is not.
        let old = ImageHeader::parse(&header(0x8_0000, 8 * MIB, 0b0010), 4 * MIB).unwrap();
        let ok = vm(0x4000_0000, 256 * MIB, 0x4008_0000, 0x4400_0000, None);
        assert!(LinuxBoot::check(&ok, &old, None, 0x2000).is_ok());
        let bad = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0000, None);
        assert!(matches!(LinuxBoot::check(&bad, &old, None, 0x2000), Err(LinuxError::Misplaced { .. })));
    }

    #[test]
    fn the_entry_point_must_be_the_load_address() {
        let mut c = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0000, None);
        c.entry_point = GuestPhysAddr(0x4000_1000);
        assert_eq!(
            LinuxBoot::check(&c, &debian(), None, 0x2000),
            Err(LinuxError::EntryNotLoadAddress { entry: 0x4000_1000, load: 0x4000_0000 })
        );
    }

    #[test]
    fn an_image_too_large_for_its_region_is_refused_counting_its_bss() {
        // 32 MiB of RAM holds the 31.4 MiB file but not the 32.06 MiB image_size.
        let c = vm(0x4000_0000, 32 * MIB, 0x4000_0000, 0x4000_0000 + 32 * MIB - 0x2000, None);
        let e = LinuxBoot::check(&c, &debian(), None, 0x2000).unwrap_err();
        assert_eq!(e, LinuxError::OutsideRam { part: Part::Kernel, range: GuestRange::new(0x4000_0000, 0x201_0000) });
        assert!(e.to_string().contains("kernel image"), "{e}");
    }

    #[test]
    fn an_initrd_over_the_kernels_bss_is_refused() {
        // Just past the file, inside image_size: the kernel would clear it as BSS.
        let c = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0000, Some(0x4200_0000));
        assert_eq!(
            LinuxBoot::check(&c, &debian(), Some(MIB), 0x2000),
            Err(LinuxError::Overlap { a: Part::Kernel, b: Part::Initrd })
        );
    }

    #[test]
    fn dtb_rules() {
        let mis = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0004, None);
        assert_eq!(LinuxBoot::check(&mis, &debian(), None, 0x2000), Err(LinuxError::DtbMisaligned(0x4400_0004)));
        let ok = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0000, None);
        assert_eq!(LinuxBoot::check(&ok, &debian(), None, 2 * MIB + 8), Err(LinuxError::DtbTooLarge(2 * MIB + 8)));
        let outside = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x5000_0000, None);
        assert!(matches!(
            LinuxBoot::check(&outside, &debian(), None, 0x2000),
            Err(LinuxError::OutsideRam { part: Part::Dtb, .. })
        ));
        let mut none = ok.clone();
        none.dtb = None;
        assert_eq!(LinuxBoot::check(&none, &debian(), None, 0x2000), Err(LinuxError::NoDtb));
        let on_initrd = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4420_1000, Some(0x4420_0000));
        assert_eq!(
            LinuxBoot::check(&on_initrd, &debian(), Some(MIB), 0x2000),
            Err(LinuxError::Overlap { a: Part::Initrd, b: Part::Dtb })
        );
    }

    #[test]
    fn a_kernel_that_wants_the_ram_base_is_refused_above_it() {
        let near = ImageHeader::parse(&header(0, 8 * MIB, 0b0010), 4 * MIB).unwrap();
        let high = vm(0x4000_0000, 256 * MIB, 0x4040_0000, 0x4400_0000, None);
        assert_eq!(
            LinuxBoot::check(&high, &near, None, 0x2000),
            Err(LinuxError::NotNearRamBase { base: 0x4040_0000, ram_base: 0x4000_0000 })
        );
        // The same place is fine for a kernel that may sit anywhere.
        assert!(LinuxBoot::check(&high, &debian(), None, 0x2000).is_ok());
    }

    #[test]
    fn ranges_that_wrap_are_refused_not_wrapped() {
        let c = vm(0x4000_0000, 256 * MIB, 0x4000_0000, 0x4400_0000, Some(u64::MAX - 0xfff));
        assert_eq!(LinuxBoot::check(&c, &debian(), Some(0x2000), 0x2000), Err(LinuxError::Overflow(Part::Initrd)));
    }
}
