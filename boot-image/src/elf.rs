//! A minimal reader for the ELF64 little-endian AArch64 executables the boot image carries.
//!
//! Owns: header and program/section header decoding, with bounds checks on every field.
//! Never touches: placement decisions (see [`crate::plan`]).

use core::fmt;

/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;
/// `ET_EXEC`.
pub const ET_EXEC: u16 = 2;
/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;

const EHDR_BYTES: usize = 64;
const PHDR_BYTES: usize = 56;
const SHDR_BYTES: usize = 64;

/// What is wrong with an ELF file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElfError {
    /// Shorter than the ELF header.
    TooShort {
        /// Bytes present.
        have: usize,
    },
    /// The first four bytes are not `\x7fELF`.
    BadMagic,
    /// `EI_CLASS` is not ELFCLASS64.
    Not64Bit {
        /// The class byte found.
        class: u8,
    },
    /// `EI_DATA` is not little-endian.
    NotLittleEndian,
    /// `e_machine` is not AArch64.
    WrongMachine {
        /// The machine found.
        machine: u16,
    },
    /// `e_type` is not `ET_EXEC` (a shared object, relocatable or PIE).
    NotExecutable {
        /// The type found.
        e_type: u16,
    },
    /// A header table runs past the end of the file or has the wrong entry size.
    BadTable {
        /// `e_phoff` or `e_shoff`.
        field: &'static str,
    },
    /// A loadable segment's file bytes run past the end of the file.
    SegmentOutsideFile {
        /// Program header index.
        index: usize,
    },
    /// A segment with `p_filesz > p_memsz` or an address range that wraps.
    BadSegment {
        /// Program header index.
        index: usize,
    },
    /// No `PT_LOAD` segment.
    NoLoadSegments,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::TooShort { have } => write!(f, "{have} bytes, shorter than an ELF64 header"),
            ElfError::BadMagic => write!(f, "not an ELF file (e_ident magic)"),
            ElfError::Not64Bit { class } => write!(f, "e_ident[EI_CLASS]={class}, need 2 (ELF64)"),
            ElfError::NotLittleEndian => write!(f, "e_ident[EI_DATA] is not little-endian"),
            ElfError::WrongMachine { machine } => {
                write!(f, "e_machine={machine}, need {EM_AARCH64} (AArch64)")
            }
            ElfError::NotExecutable { e_type } => {
                write!(f, "e_type={e_type}, need {ET_EXEC} (ET_EXEC: static, non-PIE)")
            }
            ElfError::BadTable { field } => write!(f, "{field}: header table outside the file"),
            ElfError::SegmentOutsideFile { index } => {
                write!(f, "program header {index}: p_offset+p_filesz past the end of the file")
            }
            ElfError::BadSegment { index } => {
                write!(f, "program header {index}: p_filesz > p_memsz or address range wraps")
            }
            ElfError::NoLoadSegments => write!(f, "no PT_LOAD segment"),
        }
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// A checked ELF64 AArch64 executable.
#[derive(Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    phoff: usize,
    phnum: usize,
    shoff: usize,
    shnum: usize,
    shstrndx: usize,
}

/// One `PT_LOAD` segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment {
    /// Program header index.
    pub index: usize,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_flags` (`PF_X`=1, `PF_W`=2, `PF_R`=4).
    pub flags: u32,
}

fn table(len: usize, off: u64, num: usize, entsize: u16, need: usize, field: &'static str) -> Result<usize, ElfError> {
    if num == 0 {
        return Ok(0);
    }
    let off = usize::try_from(off).map_err(|_| ElfError::BadTable { field })?;
    if entsize as usize != need {
        return Err(ElfError::BadTable { field });
    }
    let end = num.checked_mul(need).and_then(|n| n.checked_add(off)).ok_or(ElfError::BadTable { field })?;
    if end > len {
        return Err(ElfError::BadTable { field });
    }
    Ok(off)
}

impl<'a> Elf<'a> {
    /// Checks the header and the header tables, and every loadable segment's bounds.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.len() < EHDR_BYTES {
            return Err(ElfError::TooShort { have: bytes.len() });
        }
        if bytes[..4] != [0x7f, b'E', b'L', b'F'] {
            return Err(ElfError::BadMagic);
        }
        if bytes[4] != 2 {
            return Err(ElfError::Not64Bit { class: bytes[4] });
        }
        if bytes[5] != 1 {
            return Err(ElfError::NotLittleEndian);
        }
        let machine = u16_at(bytes, 18);
        if machine != EM_AARCH64 {
            return Err(ElfError::WrongMachine { machine });
        }
        let e_type = u16_at(bytes, 16);
        if e_type != ET_EXEC {
            return Err(ElfError::NotExecutable { e_type });
        }
        let phnum = u16_at(bytes, 56) as usize;
        let shnum = u16_at(bytes, 60) as usize;
        let phoff = table(bytes.len(), u64_at(bytes, 32), phnum, u16_at(bytes, 54), PHDR_BYTES, "e_phoff")?;
        let shoff = table(bytes.len(), u64_at(bytes, 40), shnum, u16_at(bytes, 58), SHDR_BYTES, "e_shoff")?;
        let shstrndx = u16_at(bytes, 62) as usize;
        let elf = Elf { bytes, phoff, phnum, shoff, shnum, shstrndx };
        let mut any = false;
        for i in 0..phnum {
            if let Some(s) = elf.phdr(i) {
                any = true;
                if s.filesz > s.memsz
                    || s.vaddr.checked_add(s.memsz).is_none()
                    || s.paddr.checked_add(s.memsz).is_none()
                {
                    return Err(ElfError::BadSegment { index: i });
                }
                match s.offset.checked_add(s.filesz) {
                    Some(end) if end <= bytes.len() as u64 => {}
                    _ => return Err(ElfError::SegmentOutsideFile { index: i }),
                }
            }
        }
        if !any {
            return Err(ElfError::NoLoadSegments);
        }
        Ok(elf)
    }

    fn phdr(&self, i: usize) -> Option<Segment> {
        let o = self.phoff + i * PHDR_BYTES;
        let b = self.bytes;
        if u32_at(b, o) != PT_LOAD {
            return None;
        }
        Some(Segment {
            index: i,
            flags: u32_at(b, o + 4),
            offset: u64_at(b, o + 8),
            vaddr: u64_at(b, o + 16),
            paddr: u64_at(b, o + 24),
            filesz: u64_at(b, o + 32),
            memsz: u64_at(b, o + 40),
        })
    }

    /// `e_entry`.
    pub fn entry(&self) -> u64 {
        u64_at(self.bytes, 24)
    }

    /// The loadable segments, in program header order.
    pub fn load_segments(&self) -> impl Iterator<Item = Segment> + '_ {
        (0..self.phnum).filter_map(|i| self.phdr(i))
    }

    /// The file bytes of a segment (bounds were checked by [`Elf::parse`]).
    pub fn segment_data(&self, s: &Segment) -> &'a [u8] {
        &self.bytes[s.offset as usize..(s.offset + s.filesz) as usize]
    }

    /// Lowest and one-past-highest virtual address over the loadable segments.
    pub fn vaddr_bounds(&self) -> (u64, u64) {
        self.bounds(|s| s.vaddr)
    }

    /// Lowest and one-past-highest physical address over the loadable segments.
    pub fn paddr_bounds(&self) -> (u64, u64) {
        self.bounds(|s| s.paddr)
    }

    fn bounds(&self, base: impl Fn(&Segment) -> u64) -> (u64, u64) {
        let lo = self.load_segments().map(|s| base(&s)).min().unwrap_or(0);
        let hi = self.load_segments().map(|s| base(&s) + s.memsz).max().unwrap_or(0);
        (lo, hi)
    }

    /// The contents of the section called `name`, if present and inside the file.
    pub fn section(&self, name: &str) -> Option<&'a [u8]> {
        if self.shnum == 0 || self.shstrndx >= self.shnum {
            return None;
        }
        let sh = |i: usize| self.shoff + i * SHDR_BYTES;
        let b = self.bytes;
        let strtab_off = usize::try_from(u64_at(b, sh(self.shstrndx) + 24)).ok()?;
        let strtab_len = usize::try_from(u64_at(b, sh(self.shstrndx) + 32)).ok()?;
        let strtab = b.get(strtab_off..strtab_off.checked_add(strtab_len)?)?;
        for i in 0..self.shnum {
            let name_off = u32_at(b, sh(i)) as usize;
            let rest = strtab.get(name_off..)?;
            let end = rest.iter().position(|&c| c == 0)?;
            if &rest[..end] == name.as_bytes() {
                let off = usize::try_from(u64_at(b, sh(i) + 24)).ok()?;
                let len = usize::try_from(u64_at(b, sh(i) + 32)).ok()?;
                return b.get(off..off.checked_add(len)?);
            }
        }
        None
    }
}

/// Test and tool support: writes a minimal ELF64 executable.
#[cfg(any(test, feature = "alloc"))]
pub mod write {
    use alloc::vec::Vec;

    /// One segment to write: `(vaddr, paddr, data, memsz, flags)`.
    pub struct OutSegment<'a> {
        /// `p_vaddr`.
        pub vaddr: u64,
        /// `p_paddr`.
        pub paddr: u64,
        /// File bytes.
        pub data: &'a [u8],
        /// `p_memsz` (at least `data.len()`).
        pub memsz: u64,
        /// `p_flags`.
        pub flags: u32,
    }

    /// An ELF64 little-endian executable for `machine` with the given segments and no
    /// section headers. Each segment's file offset is congruent to its `p_vaddr` modulo
    /// 4 KiB (`p_align`), as the ELF specification requires of loadable segments.
    pub fn executable(machine: u16, entry: u64, segments: &[OutSegment<'_>]) -> Vec<u8> {
        const ALIGN: usize = 4096;
        let place = |end: usize, vaddr: u64| end.next_multiple_of(ALIGN) + (vaddr % ALIGN as u64) as usize;
        let ph_end = super::EHDR_BYTES + segments.len() * super::PHDR_BYTES;
        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&super::ET_EXEC.to_le_bytes());
        out.extend_from_slice(&machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&(super::EHDR_BYTES as u64).to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&(super::EHDR_BYTES as u16).to_le_bytes());
        out.extend_from_slice(&(super::PHDR_BYTES as u16).to_le_bytes());
        out.extend_from_slice(&(segments.len() as u16).to_le_bytes());
        out.extend_from_slice(&(super::SHDR_BYTES as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        let mut offset = ph_end;
        for s in segments {
            offset = place(offset, s.vaddr);
            out.extend_from_slice(&super::PT_LOAD.to_le_bytes());
            out.extend_from_slice(&s.flags.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&s.vaddr.to_le_bytes());
            out.extend_from_slice(&s.paddr.to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&s.memsz.to_le_bytes());
            out.extend_from_slice(&(ALIGN as u64).to_le_bytes());
            offset += s.data.len();
        }
        for s in segments {
            out.resize(place(out.len(), s.vaddr), 0);
            out.extend_from_slice(s.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::write::{OutSegment, executable};
    use super::*;

    #[test]
    fn segments_and_bounds_are_read_back() {
        let data = [1u8, 2, 3, 4];
        let bytes = executable(
            EM_AARCH64,
            0x40_1000,
            &[
                OutSegment { vaddr: 0x40_0000, paddr: 0x1000, data: &data, memsz: 0x2000, flags: 5 },
                OutSegment { vaddr: 0x40_2000, paddr: 0x3000, data: &data[..2], memsz: 2, flags: 6 },
            ],
        );
        let elf = Elf::parse(&bytes).unwrap();
        assert_eq!(elf.entry(), 0x40_1000);
        let segs: alloc::vec::Vec<_> = elf.load_segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(elf.segment_data(&segs[0]), &data);
        assert_eq!(elf.segment_data(&segs[1]), &data[..2]);
        assert_eq!(elf.vaddr_bounds(), (0x40_0000, 0x40_2002));
        assert_eq!(elf.paddr_bounds(), (0x1000, 0x3002));
        assert_eq!(elf.section(".text"), None);
        // A segment that does not start on a page: its offset keeps the page offset.
        let bytes = executable(
            EM_AARCH64,
            0x40_1234,
            &[OutSegment { vaddr: 0x40_1234, paddr: 0x9000_1234, data: &data, memsz: 4, flags: 5 }],
        );
        let elf = Elf::parse(&bytes).unwrap();
        let s = elf.load_segments().next().unwrap();
        assert_eq!(s.offset % 4096, 0x234);
        assert_eq!(elf.segment_data(&s), &data);
    }

    #[test]
    fn foreign_and_broken_files_are_named() {
        let data = [0u8; 4];
        let seg = [OutSegment { vaddr: 0, paddr: 0, data: &data, memsz: 4, flags: 5 }];
        let x86 = executable(62, 0, &seg);
        assert_eq!(Elf::parse(&x86).err(), Some(ElfError::WrongMachine { machine: 62 }));
        assert!(ElfError::WrongMachine { machine: 62 }.to_string().contains("e_machine=62"));
        assert_eq!(Elf::parse(&[0u8; 10]).err(), Some(ElfError::TooShort { have: 10 }));
        let mut bad = executable(EM_AARCH64, 0, &seg);
        bad[0] = 0;
        assert_eq!(Elf::parse(&bad).err(), Some(ElfError::BadMagic));
        let mut pie = executable(EM_AARCH64, 0, &seg);
        pie[16] = 3;
        assert_eq!(Elf::parse(&pie).err(), Some(ElfError::NotExecutable { e_type: 3 }));
        let mut b32 = executable(EM_AARCH64, 0, &seg);
        b32[4] = 1;
        assert_eq!(Elf::parse(&b32).err(), Some(ElfError::Not64Bit { class: 1 }));
        let mut truncated = executable(EM_AARCH64, 0, &seg);
        truncated.truncate(truncated.len() - 2);
        assert_eq!(Elf::parse(&truncated).err(), Some(ElfError::SegmentOutsideFile { index: 0 }));
        let bss_smaller = [OutSegment { vaddr: 0, paddr: 0, data: &data, memsz: 2, flags: 5 }];
        let b = executable(EM_AARCH64, 0, &bss_smaller);
        assert_eq!(Elf::parse(&b).err(), Some(ElfError::BadSegment { index: 0 }));
        let none = executable(EM_AARCH64, 0, &[]);
        assert_eq!(Elf::parse(&none).err(), Some(ElfError::NoLoadSegments));
    }
}
