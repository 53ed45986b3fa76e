//! The payload the image tool appends to the loader: a fixed header with everything the
//! loader needs to enter the kernel, a table of copies (segment bytes → physical address,
//! zero-filled to the memory size), the segment bytes, and optionally a device tree.
//!
//! Layout (all fields little-endian `u64`, offsets relative to the payload start, which is
//! 4 KiB aligned):
//!
//! | word | field |
//! |---|---|
//! | 0 | magic `b"CAPVBOOT"` |
//! | 1 | format version ([`VERSION`]) |
//! | 2 | total length in bytes |
//! | 3 | FNV-1a 64 checksum of bytes `32..total` |
//! | 4 | kernel virtual entry |
//! | 5 | kernel window offset (`vaddr - paddr`) |
//! | 6, 7 | user image physical start, end (`ui_p_reg_start`, `ui_p_reg_end`) |
//! | 8 | user image `pv_offset` (`paddr - vaddr`) |
//! | 9 | user image virtual entry |
//! | 10, 11 | DTB slot physical start, end (the DTB is copied to the top of the slot) |
//! | 12, 13 | embedded DTB offset, length (0, 0 if none) |
//! | 14 | physical address to probe for a DTB when `x0` holds none (0: do not probe) |
//! | 15 | console UART (PL011) physical address used until the DTB names one |
//! | 16 | `TCR_EL2` value |
//! | 17 | number of RAM ranges (at most [`MAX_RAM`]) |
//! | 18..26 | RAM ranges as (start, end) pairs |
//! | 26, 27 | number of copies, offset of the copy table |
//!
//! Each copy is four words: source offset, file size, destination physical address,
//! memory size.
//!
//! Owns: encoding and checked decoding. Never touches: memory (the loader copies).

use core::fmt;

/// `b"CAPVBOOT"` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CAPVBOOT");
/// Format version.
pub const VERSION: u64 = 1;
/// Bytes of the fixed header.
pub const HEADER_BYTES: usize = 256;
/// RAM ranges the header holds.
pub const MAX_RAM: usize = 4;
const COPY_BYTES: usize = 32;
const CHECKSUM_FROM: usize = 32;

/// The kernel's boot arguments and how the loader maps memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BootInfo {
    /// Kernel virtual entry.
    pub kernel_entry: u64,
    /// Kernel window offset, `vaddr - paddr`.
    pub kernel_offset: u64,
    /// `ui_p_reg_start`.
    pub ui_p_start: u64,
    /// `ui_p_reg_end`.
    pub ui_p_end: u64,
    /// `pv_offset`: user image `paddr - vaddr`.
    pub pv_offset: u64,
    /// User image virtual entry.
    pub v_entry: u64,
    /// DTB slot start.
    pub dtb_slot_start: u64,
    /// DTB slot end.
    pub dtb_slot_end: u64,
    /// Where to look for a DTB when `x0` has none (0: nowhere).
    pub dtb_probe: u64,
    /// PL011 used before the DTB is read.
    pub uart: u64,
    /// `TCR_EL2`.
    pub tcr_el2: u64,
    /// RAM ranges the kernel owns: mapped normal, identity and in the kernel window.
    pub ram: [(u64, u64); MAX_RAM],
    /// How many of `ram` are used.
    pub ram_count: usize,
}

/// One copy: `filesz` bytes from the payload to `dest`, then zeros up to `memsz`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Copy {
    /// Offset of the bytes in the payload.
    pub src_offset: u64,
    /// Bytes to copy.
    pub filesz: u64,
    /// Physical destination.
    pub dest: u64,
    /// Bytes at the destination (the rest zeroed).
    pub memsz: u64,
}

/// What is wrong with a payload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PayloadError {
    /// No payload magic: the loader was not packed by `capvisor image`.
    NoMagic,
    /// A different format version.
    Version {
        /// The version found.
        found: u64,
    },
    /// Shorter than the header says.
    Truncated {
        /// Bytes the header claims.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// The checksum does not match (corrupted image).
    Checksum {
        /// Stored.
        stored: u64,
        /// Computed.
        computed: u64,
    },
    /// A field points outside the payload or is inconsistent.
    BadField {
        /// The field.
        field: &'static str,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::NoMagic => write!(f, "payload: no CAPVBOOT magic (pack the loader with `capvisor image`)"),
            PayloadError::Version { found } => {
                write!(f, "payload: format version {found}, this loader reads {VERSION}")
            }
            PayloadError::Truncated { need, have } => write!(f, "payload: {have} bytes, header says {need}"),
            PayloadError::Checksum { stored, computed } => {
                write!(f, "payload: checksum {computed:#018x}, header says {stored:#018x} (image corrupted)")
            }
            PayloadError::BadField { field } => write!(f, "payload: field {field} out of bounds"),
        }
    }
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// A checked payload.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    bytes: &'a [u8],
    /// Boot arguments and memory map.
    pub info: BootInfo,
    copies_offset: usize,
    copy_count: usize,
    dtb: Option<(usize, usize)>,
}

/// The total length a header claims, after checking magic and version (for a loader that
/// must know how many bytes to look at).
pub fn total_len(header: &[u8]) -> Result<u64, PayloadError> {
    if header.len() < HEADER_BYTES || word(header, 0) != MAGIC {
        return Err(PayloadError::NoMagic);
    }
    if word(header, 1) != VERSION {
        return Err(PayloadError::Version { found: word(header, 1) });
    }
    Ok(word(header, 2))
}

impl<'a> Payload<'a> {
    /// Checks magic, version, length, checksum and that every offset is inside.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PayloadError> {
        let total = total_len(bytes)?;
        if total > bytes.len() as u64 || total < HEADER_BYTES as u64 {
            return Err(PayloadError::Truncated { need: total, have: bytes.len() as u64 });
        }
        let bytes = &bytes[..total as usize];
        let computed = fnv1a64(&bytes[CHECKSUM_FROM..]);
        if computed != word(bytes, 3) {
            return Err(PayloadError::Checksum { stored: word(bytes, 3), computed });
        }
        let ram_count = word(bytes, 17) as usize;
        if ram_count > MAX_RAM {
            return Err(PayloadError::BadField { field: "ram_count" });
        }
        let mut ram = [(0, 0); MAX_RAM];
        for (i, r) in ram.iter_mut().enumerate() {
            *r = (word(bytes, 18 + 2 * i), word(bytes, 19 + 2 * i));
        }
        let info = BootInfo {
            kernel_entry: word(bytes, 4),
            kernel_offset: word(bytes, 5),
            ui_p_start: word(bytes, 6),
            ui_p_end: word(bytes, 7),
            pv_offset: word(bytes, 8),
            v_entry: word(bytes, 9),
            dtb_slot_start: word(bytes, 10),
            dtb_slot_end: word(bytes, 11),
            dtb_probe: word(bytes, 14),
            uart: word(bytes, 15),
            tcr_el2: word(bytes, 16),
            ram,
            ram_count,
        };
        let inside = |off: u64, len: u64| off.checked_add(len).is_some_and(|e| e <= total);
        let (d_off, d_len) = (word(bytes, 12), word(bytes, 13));
        if !inside(d_off, d_len) {
            return Err(PayloadError::BadField { field: "dtb" });
        }
        let dtb = (d_len > 0).then_some((d_off as usize, d_len as usize));
        let (count, offset) = (word(bytes, 26), word(bytes, 27));
        if !count.checked_mul(COPY_BYTES as u64).is_some_and(|n| inside(offset, n)) {
            return Err(PayloadError::BadField { field: "copies" });
        }
        let p = Payload { bytes, info, copies_offset: offset as usize, copy_count: count as usize, dtb };
        for c in p.copies() {
            if !inside(c.src_offset, c.filesz) || c.filesz > c.memsz || c.dest.checked_add(c.memsz).is_none() {
                return Err(PayloadError::BadField { field: "copy" });
            }
        }
        if info.ui_p_start > info.ui_p_end || info.dtb_slot_start > info.dtb_slot_end {
            return Err(PayloadError::BadField { field: "regions" });
        }
        Ok(p)
    }

    /// The copies, in table order.
    pub fn copies(&self) -> impl Iterator<Item = Copy> + '_ {
        (0..self.copy_count).map(move |i| {
            let w = (self.copies_offset + i * COPY_BYTES) / 8;
            Copy {
                src_offset: word(self.bytes, w),
                filesz: word(self.bytes, w + 1),
                dest: word(self.bytes, w + 2),
                memsz: word(self.bytes, w + 3),
            }
        })
    }

    /// The source bytes of a copy (bounds checked by [`Payload::parse`]).
    pub fn copy_data(&self, c: &Copy) -> &'a [u8] {
        &self.bytes[c.src_offset as usize..(c.src_offset + c.filesz) as usize]
    }

    /// The embedded device tree, if the image was packed with one.
    pub fn embedded_dtb(&self) -> Option<&'a [u8]> {
        self.dtb.map(|(o, l)| &self.bytes[o..o + l])
    }

    /// The RAM ranges.
    pub fn ram(&self) -> &[(u64, u64)] {
        &self.info.ram[..self.info.ram_count]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the payload is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Serialises a payload. Data blobs are 8-byte aligned; the result is parsed back by
/// [`Payload::parse`].
#[cfg(any(test, feature = "alloc"))]
pub fn encode(info: &BootInfo, copies: &[(u64, &[u8], u64)], dtb: Option<&[u8]>) -> alloc::vec::Vec<u8> {
    use alloc::vec::Vec;
    let mut out = alloc::vec![0u8; HEADER_BYTES];
    let table = out.len();
    out.resize(table + copies.len() * COPY_BYTES, 0);
    let mut entries = Vec::new();
    for &(dest, data, memsz) in copies {
        out.resize(out.len().next_multiple_of(8), 0);
        entries.push(Copy { src_offset: out.len() as u64, filesz: data.len() as u64, dest, memsz });
        out.extend_from_slice(data);
    }
    let mut dtb_at = (0u64, 0u64);
    if let Some(d) = dtb {
        out.resize(out.len().next_multiple_of(8), 0);
        dtb_at = (out.len() as u64, d.len() as u64);
        out.extend_from_slice(d);
    }
    out.resize(out.len().next_multiple_of(8), 0);
    let put = |out: &mut Vec<u8>, w: usize, v: u64| out[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
    for (i, c) in entries.iter().enumerate() {
        let w = (table + i * COPY_BYTES) / 8;
        for (k, v) in [c.src_offset, c.filesz, c.dest, c.memsz].into_iter().enumerate() {
            put(&mut out, w + k, v);
        }
    }
    let total = out.len() as u64;
    let fields = [
        (0, MAGIC),
        (1, VERSION),
        (2, total),
        (4, info.kernel_entry),
        (5, info.kernel_offset),
        (6, info.ui_p_start),
        (7, info.ui_p_end),
        (8, info.pv_offset),
        (9, info.v_entry),
        (10, info.dtb_slot_start),
        (11, info.dtb_slot_end),
        (12, dtb_at.0),
        (13, dtb_at.1),
        (14, info.dtb_probe),
        (15, info.uart),
        (16, info.tcr_el2),
        (17, info.ram_count as u64),
        (26, copies.len() as u64),
        (27, table as u64),
    ];
    for (w, v) in fields {
        put(&mut out, w, v);
    }
    for (i, (s, e)) in info.ram.iter().enumerate() {
        put(&mut out, 18 + 2 * i, *s);
        put(&mut out, 19 + 2 * i, *e);
    }
    let sum = fnv1a64(&out[CHECKSUM_FROM..]);
    put(&mut out, 3, sum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn sample() -> Vec<u8> {
        let info = BootInfo {
            kernel_entry: 0x80_6000_0000,
            kernel_offset: 0x80_0000_0000,
            ui_p_start: 0xbffc_a000,
            ui_p_end: 0xc000_0000,
            pv_offset: 0xbffc_a000u64.wrapping_sub(0x40_0000),
            v_entry: 0x40_0100,
            dtb_slot_start: 0xbfeca000,
            dtb_slot_end: 0xbffc_a000,
            dtb_probe: 0x4000_0000,
            uart: 0x900_0000,
            tcr_el2: 0x8084_3510,
            ram: [(0x6000_0000, 0xc000_0000), (0, 0), (0, 0), (0, 0)],
            ram_count: 1,
        };
        encode(&info, &[(0x6000_0000, &[1, 2, 3], 0x1000), (0xbffc_a000, &[4; 9], 9)], Some(&[0xd0, 0x0d]))
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.info.kernel_entry, 0x80_6000_0000);
        assert_eq!(p.ram(), &[(0x6000_0000, 0xc000_0000)]);
        let copies: Vec<_> = p.copies().collect();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].dest, 0x6000_0000);
        assert_eq!(copies[0].memsz, 0x1000);
        assert_eq!(p.copy_data(&copies[0]), &[1, 2, 3]);
        assert_eq!(p.copy_data(&copies[1]), &[4; 9]);
        assert_eq!(p.embedded_dtb(), Some(&[0xd0u8, 0x0d][..]));
        assert_eq!(total_len(&bytes).unwrap(), bytes.len() as u64);
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = sample();
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(Payload::parse(&bad), Err(PayloadError::Checksum { .. })));
        assert!(matches!(Payload::parse(&bytes[..bytes.len() - 8]), Err(PayloadError::Truncated { .. })));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::NoMagic));
        let mut bad = bytes.clone();
        bad[8] = 9;
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::Version { found: 9 }));
        // A copy whose source runs past the end, with a valid checksum.
        let mut bad = bytes.clone();
        let w = HEADER_BYTES / 8 + 1; // filesz of the first copy
        bad[w * 8..w * 8 + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let sum = fnv1a64(&bad[CHECKSUM_FROM..]);
        bad[24..32].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "copy" }));
    }
}
