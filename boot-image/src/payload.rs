//! The payload the image tool appends to the loader: a fixed header with everything the
//! loader needs to enter the kernel, a table of copies (segment bytes → physical address,
//! zero-filled to the memory size), optionally a device tree, and the file bytes of the
//! copies that travel in the payload.
//!
//! Layout (all fields little-endian `u64`, offsets relative to the payload start, which is
//! 4 KiB aligned). Checksums are [`crate::checksum`]:
//!
//! | word | field |
//! |---|---|
//! | 0 | magic `b"CAPVBOOT"` |
//! | 1 | format version ([`VERSION`]) |
//! | 2 | checksum of header bytes `24..256` (words 3..32) |
//! | 3 | total length in bytes (a multiple of 8) |
//! | 4 | kernel virtual entry |
//! | 5 | kernel window offset (`vaddr - paddr`) |
//! | 6, 7 | user image physical start, end (`ui_p_reg_start`, `ui_p_reg_end`) |
//! | 8 | user image `pv_offset` (`paddr - vaddr`) |
//! | 9 | user image virtual entry |
//! | 10, 11 | DTB slot physical start, end (the DTB is copied to the top of the slot) |
//! | 12, 13 | embedded DTB length (0 if none), its checksum |
//! | 14 | physical address to probe for a DTB when `x0` holds none (0: do not probe) |
//! | 15 | console UART (PL011) physical address used until the DTB names one |
//! | 16 | `TCR_EL2` value |
//! | 17 | number of RAM ranges (at most [`MAX_RAM`]) |
//! | 18..26 | RAM ranges as (start, end) pairs |
//! | 26, 27 | number of copies, checksum of the copy table |
//! | 28 | cores the kernel was built for (`MAX_NUM_NODES`, at least 1): the loader starts them all |
//! | 29..32 | zero |
//!
//! After the header, in this order, each item at the next 8-byte boundary with zero bytes
//! in between and after the last (up to the total length): the copy table, the embedded
//! DTB, and the file bytes of every copy that is not in place, in table order. Each copy is
//! five words: flags ([`COPY_IN_PLACE`]: the bytes are already at the destination, put
//! there by the firmware), file size, destination physical address, memory size, and the
//! checksum of its file bytes.
//!
//! Every byte of the payload is thus covered: magic and version by value, header, table,
//! DTB and copies by their checksums, gaps by being zero. The header is checked first and
//! gives the lengths of everything else, so each checksum covers a range that is itself
//! already checked. A copy's bytes are checked where they are: [`Copy::verify`] over the
//! payload's bytes before they are copied, or over the destination for a copy in place.
//!
//! Owns: encoding and checked decoding. Never touches: memory (the loader copies).

use core::fmt;

use crate::checksum::checksum;

/// `b"CAPVBOOT"` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CAPVBOOT");
/// Format version. 2: lane checksum instead of FNV-1a, one checksum per part and per copy,
/// copies in place, canonical layout. 3: the number of cores (word 28).
pub const VERSION: u64 = 3;
/// Cores the header may name: the loader has a stack for each.
pub const MAX_CORES: u64 = 8;
/// Bytes of the fixed header.
pub const HEADER_BYTES: usize = 256;
/// RAM ranges the header holds.
pub const MAX_RAM: usize = 4;
/// Copy flag: the file bytes are not in the payload but already at the destination.
pub const COPY_IN_PLACE: u64 = 1;
const COPY_BYTES: usize = 40;
/// The header checksum starts after magic, version and itself.
const HEADER_SUM_FROM: usize = 24;

// Header word indices.
const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_HEADER_SUM: usize = 2;
const W_TOTAL: usize = 3;
const W_KERNEL_ENTRY: usize = 4;
const W_KERNEL_OFFSET: usize = 5;
const W_UI_P_START: usize = 6;
const W_UI_P_END: usize = 7;
const W_PV_OFFSET: usize = 8;
const W_V_ENTRY: usize = 9;
const W_DTB_SLOT_START: usize = 10;
const W_DTB_SLOT_END: usize = 11;
const W_DTB_LEN: usize = 12;
const W_DTB_SUM: usize = 13;
const W_DTB_PROBE: usize = 14;
const W_UART: usize = 15;
const W_TCR: usize = 16;
const W_RAM_COUNT: usize = 17;
const W_RAM: usize = 18;
const W_COPY_COUNT: usize = 26;
const W_TABLE_SUM: usize = 27;
const W_CORES: usize = 28;

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
    /// Cores the kernel waits for at boot (its `MAX_NUM_NODES`), 1..=[`MAX_CORES`]: the
    /// loader enters the kernel on each.
    pub cores: u64,
}

/// Where a copy's file bytes are when the loader starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// In the payload at this offset; the loader copies them.
    Payload {
        /// Offset from the payload start.
        offset: u64,
    },
    /// Already at the destination (the firmware loaded them there).
    InPlace,
}

/// One copy: `filesz` bytes to `dest`, then zeros up to `memsz`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Copy {
    /// Position in the copy table.
    pub index: usize,
    /// Where the file bytes are.
    pub source: Source,
    /// Bytes of file data.
    pub filesz: u64,
    /// Physical destination.
    pub dest: u64,
    /// Bytes at the destination (the rest zeroed).
    pub memsz: u64,
    /// Checksum of the file bytes.
    pub checksum: u64,
}

impl Copy {
    /// Checks `bytes`, the copy's file bytes wherever they are, against its checksum.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), PayloadError> {
        if bytes.len() as u64 != self.filesz {
            return Err(PayloadError::BadField { field: "copy length" });
        }
        let computed = checksum(bytes);
        if computed != self.checksum {
            return Err(PayloadError::CopyChecksum {
                index: self.index,
                dest: self.dest,
                in_place: self.source == Source::InPlace,
                stored: self.checksum,
                computed,
            });
        }
        Ok(())
    }
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
    /// The header, the copy table or the embedded DTB does not match its checksum.
    Checksum {
        /// Which part.
        part: &'static str,
        /// Stored.
        stored: u64,
        /// Computed.
        computed: u64,
    },
    /// A copy's file bytes do not match their checksum.
    CopyChecksum {
        /// Position in the copy table.
        index: usize,
        /// Its destination.
        dest: u64,
        /// Whether the bytes were checked at the destination (else in the payload).
        in_place: bool,
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
            PayloadError::Checksum { part, stored, computed } => {
                write!(f, "payload: {part} checksum {computed:#018x}, stored {stored:#018x} (image corrupted)")
            }
            PayloadError::CopyChecksum { index, dest, in_place, stored, computed } => {
                let at = if *in_place { "at its destination" } else { "in the payload" };
                write!(
                    f,
                    "payload: copy {index} to {dest:#x}: checksum of its bytes {at} {computed:#018x}, table says {stored:#018x} (image corrupted)"
                )
            }
            PayloadError::BadField { field } => write!(f, "payload: field {field} out of bounds"),
        }
    }
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// The next 8-byte boundary; saturates so that a corrupt length lands out of bounds
/// instead of wrapping.
fn align8(x: u64) -> u64 {
    x.saturating_add(7) & !7
}

/// A checked header: enough to set up the console and to know how many bytes to read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// Boot arguments and memory map.
    pub info: BootInfo,
    /// Total payload length in bytes.
    pub total: u64,
    copy_count: u64,
    table_sum: u64,
    dtb_len: u64,
    dtb_sum: u64,
}

impl Header {
    /// Checks magic, version and the header checksum over the first [`HEADER_BYTES`].
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() < 8 || word(bytes, W_MAGIC) != MAGIC {
            return Err(PayloadError::NoMagic);
        }
        if bytes.len() < HEADER_BYTES {
            return Err(PayloadError::Truncated { need: HEADER_BYTES as u64, have: bytes.len() as u64 });
        }
        let version = word(bytes, W_VERSION);
        if version != VERSION {
            return Err(PayloadError::Version { found: version });
        }
        let stored = word(bytes, W_HEADER_SUM);
        let computed = checksum(&bytes[HEADER_SUM_FROM..HEADER_BYTES]);
        if computed != stored {
            return Err(PayloadError::Checksum { part: "header", stored, computed });
        }
        let ram_count = word(bytes, W_RAM_COUNT) as usize;
        if ram_count > MAX_RAM {
            return Err(PayloadError::BadField { field: "ram_count" });
        }
        let mut ram = [(0, 0); MAX_RAM];
        for (i, r) in ram.iter_mut().enumerate() {
            *r = (word(bytes, W_RAM + 2 * i), word(bytes, W_RAM + 1 + 2 * i));
        }
        let info = BootInfo {
            kernel_entry: word(bytes, W_KERNEL_ENTRY),
            kernel_offset: word(bytes, W_KERNEL_OFFSET),
            ui_p_start: word(bytes, W_UI_P_START),
            ui_p_end: word(bytes, W_UI_P_END),
            pv_offset: word(bytes, W_PV_OFFSET),
            v_entry: word(bytes, W_V_ENTRY),
            dtb_slot_start: word(bytes, W_DTB_SLOT_START),
            dtb_slot_end: word(bytes, W_DTB_SLOT_END),
            dtb_probe: word(bytes, W_DTB_PROBE),
            uart: word(bytes, W_UART),
            tcr_el2: word(bytes, W_TCR),
            ram,
            ram_count,
            cores: word(bytes, W_CORES),
        };
        if !(1..=MAX_CORES).contains(&info.cores) {
            return Err(PayloadError::BadField { field: "cores" });
        }
        if info.ui_p_start > info.ui_p_end || info.dtb_slot_start > info.dtb_slot_end {
            return Err(PayloadError::BadField { field: "regions" });
        }
        Ok(Header {
            info,
            total: word(bytes, W_TOTAL),
            copy_count: word(bytes, W_COPY_COUNT),
            table_sum: word(bytes, W_TABLE_SUM),
            dtb_len: word(bytes, W_DTB_LEN),
            dtb_sum: word(bytes, W_DTB_SUM),
        })
    }
}

/// A checked payload: header, copy table and embedded DTB verified, every copy's bounds
/// checked. The copies' bytes are not checked yet: [`Copy::verify`] does that where they are.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    bytes: &'a [u8],
    /// Boot arguments and memory map.
    pub info: BootInfo,
    copy_count: usize,
    dtb: Option<(usize, usize)>,
    data_start: u64,
}

impl<'a> Payload<'a> {
    /// Checks the header, the length, the copy table's and the DTB's checksums, and that the
    /// layout is the canonical one (every offset inside, gaps zero).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PayloadError> {
        let h = Header::parse(bytes)?;
        let total = h.total;
        if total > bytes.len() as u64 {
            return Err(PayloadError::Truncated { need: total, have: bytes.len() as u64 });
        }
        if total < HEADER_BYTES as u64 || !total.is_multiple_of(8) {
            return Err(PayloadError::BadField { field: "total" });
        }
        let bytes = &bytes[..total as usize];
        let inside = |off: u64, len: u64| off.checked_add(len).is_some_and(|e| e <= total);
        let table = HEADER_BYTES as u64;
        let table_len = h.copy_count.checked_mul(COPY_BYTES as u64).filter(|&n| inside(table, n));
        let Some(table_len) = table_len else {
            return Err(PayloadError::BadField { field: "copies" });
        };
        let table_end = table + table_len;
        let stored = h.table_sum;
        let computed = checksum(&bytes[table as usize..table_end as usize]);
        if computed != stored {
            return Err(PayloadError::Checksum { part: "copy table", stored, computed });
        }
        if !inside(table_end, h.dtb_len) {
            return Err(PayloadError::BadField { field: "dtb" });
        }
        let dtb_range = table_end as usize..(table_end + h.dtb_len) as usize;
        let computed = checksum(&bytes[dtb_range.clone()]);
        if computed != h.dtb_sum {
            return Err(PayloadError::Checksum { part: "device tree", stored: h.dtb_sum, computed });
        }
        let p = Payload {
            bytes,
            info: h.info,
            copy_count: h.copy_count as usize,
            dtb: (h.dtb_len > 0).then_some((dtb_range.start, dtb_range.len())),
            data_start: align8(dtb_range.end as u64),
        };
        let zeros = |from: u64, to: u64| bytes[from as usize..to as usize].iter().all(|&b| b == 0);
        let mut end = dtb_range.end as u64;
        for c in p.copies() {
            if p.entry_word(c.index, 0) & !COPY_IN_PLACE != 0 {
                return Err(PayloadError::BadField { field: "copy flags" });
            }
            if c.filesz > c.memsz || c.dest.checked_add(c.memsz).is_none() {
                return Err(PayloadError::BadField { field: "copy" });
            }
            if let Source::Payload { offset } = c.source {
                if !inside(offset, c.filesz) {
                    return Err(PayloadError::BadField { field: "copy" });
                }
                if !zeros(end, offset) {
                    return Err(PayloadError::BadField { field: "padding" });
                }
                end = offset + c.filesz;
            }
        }
        if align8(end) != total || !zeros(end, total) {
            return Err(PayloadError::BadField { field: "total" });
        }
        Ok(p)
    }

    /// Word `k` of copy table entry `index`.
    fn entry_word(&self, index: usize, k: usize) -> u64 {
        word(self.bytes, (HEADER_BYTES + index * COPY_BYTES) / 8 + k)
    }

    /// The copies, in table order; the payload offsets follow from the canonical layout.
    pub fn copies(&self) -> impl Iterator<Item = Copy> + '_ {
        let mut at = self.data_start;
        (0..self.copy_count).map(move |index| {
            let filesz = self.entry_word(index, 1);
            let source = if self.entry_word(index, 0) & COPY_IN_PLACE != 0 {
                Source::InPlace
            } else {
                let offset = at;
                at = align8(offset.saturating_add(filesz));
                Source::Payload { offset }
            };
            Copy {
                index,
                source,
                filesz,
                dest: self.entry_word(index, 2),
                memsz: self.entry_word(index, 3),
                checksum: self.entry_word(index, 4),
            }
        })
    }

    /// The file bytes of a copy that travels in the payload (bounds checked by
    /// [`Payload::parse`]); `None` for a copy in place.
    pub fn source_bytes(&self, c: &Copy) -> Option<&'a [u8]> {
        match c.source {
            Source::Payload { offset } => Some(&self.bytes[offset as usize..(offset + c.filesz) as usize]),
            Source::InPlace => None,
        }
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

/// A segment to place: file bytes, destination and memory size (the rest zeroed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Load<'a> {
    /// Physical destination.
    pub dest: u64,
    /// File bytes.
    pub data: &'a [u8],
    /// Bytes at the destination.
    pub memsz: u64,
}

/// Where the encoded payload puts the copies' file bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// In the payload; the loader copies them (a flat binary, e.g. for U-Boot `go`).
    Payload,
    /// Not in the payload: the firmware places them (the ELF image gives each its own
    /// `PT_LOAD`, which QEMU loads at `p_paddr`), and the loader checks them there.
    InPlace,
}

/// The payload's length for these inputs, without building it.
pub fn encoded_len(loads: &[Load<'_>], dtb: Option<&[u8]>, placement: Placement) -> u64 {
    let mut end = align8((HEADER_BYTES + loads.len() * COPY_BYTES) as u64 + dtb.map_or(0, |d| d.len() as u64));
    if placement == Placement::Payload {
        for l in loads {
            end = align8(end + l.data.len() as u64);
        }
    }
    end
}

/// Serialises a payload in the canonical layout; the result is parsed back by
/// [`Payload::parse`].
#[cfg(any(test, feature = "alloc"))]
pub fn encode(info: &BootInfo, loads: &[Load<'_>], dtb: Option<&[u8]>, placement: Placement) -> alloc::vec::Vec<u8> {
    use alloc::vec::Vec;
    let mut out = alloc::vec![0u8; HEADER_BYTES];
    let put = |out: &mut Vec<u8>, w: usize, v: u64| out[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
    let flags = match placement {
        Placement::Payload => 0,
        Placement::InPlace => COPY_IN_PLACE,
    };
    for l in loads {
        for v in [flags, l.data.len() as u64, l.dest, l.memsz, checksum(l.data)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let table_sum = checksum(&out[HEADER_BYTES..]);
    let dtb = dtb.unwrap_or(&[]);
    out.extend_from_slice(dtb);
    if placement == Placement::Payload {
        for l in loads {
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(l.data);
        }
    }
    out.resize(out.len().next_multiple_of(8), 0);
    let fields = [
        (W_MAGIC, MAGIC),
        (W_VERSION, VERSION),
        (W_TOTAL, out.len() as u64),
        (W_KERNEL_ENTRY, info.kernel_entry),
        (W_KERNEL_OFFSET, info.kernel_offset),
        (W_UI_P_START, info.ui_p_start),
        (W_UI_P_END, info.ui_p_end),
        (W_PV_OFFSET, info.pv_offset),
        (W_V_ENTRY, info.v_entry),
        (W_DTB_SLOT_START, info.dtb_slot_start),
        (W_DTB_SLOT_END, info.dtb_slot_end),
        (W_DTB_LEN, dtb.len() as u64),
        (W_DTB_SUM, checksum(dtb)),
        (W_DTB_PROBE, info.dtb_probe),
        (W_UART, info.uart),
        (W_TCR, info.tcr_el2),
        (W_RAM_COUNT, info.ram_count as u64),
        (W_COPY_COUNT, loads.len() as u64),
        (W_TABLE_SUM, table_sum),
        (W_CORES, info.cores),
    ];
    for (w, v) in fields {
        put(&mut out, w, v);
    }
    for (i, (s, e)) in info.ram.iter().enumerate() {
        put(&mut out, W_RAM + 2 * i, *s);
        put(&mut out, W_RAM + 1 + 2 * i, *e);
    }
    let sum = checksum(&out[HEADER_SUM_FROM..HEADER_BYTES]);
    put(&mut out, W_HEADER_SUM, sum);
    debug_assert_eq!(out.len() as u64, encoded_len(loads, Some(dtb), placement));
    out
}

/// Rewrites every checksum of a payload so that each matches the bytes it covers: the
/// copies' file bytes in the payload (where the canonical layout puts them), the DTB, the
/// copy table, then the header. Whatever lengths do not fit in `bytes` are left alone. For
/// tests and the fuzzers, so that damaged fields reach the checks behind the checksums.
#[cfg(any(test, feature = "alloc"))]
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() < HEADER_BYTES {
        return;
    }
    let get = |b: &[u8], at: usize| word(&b[at..], 0);
    let put = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let len = bytes.len() as u64;
    let table = HEADER_BYTES as u64;
    let count = get(bytes, W_COPY_COUNT * 8);
    let table_end = count.checked_mul(COPY_BYTES as u64).and_then(|n| n.checked_add(table)).filter(|&e| e <= len);
    if let Some(table_end) = table_end {
        let dtb_end = table_end.checked_add(get(bytes, W_DTB_LEN * 8)).filter(|&e| e <= len);
        if let Some(dtb_end) = dtb_end {
            let sum = checksum(&bytes[table_end as usize..dtb_end as usize]);
            put(bytes, W_DTB_SUM * 8, sum);
            let mut at = align8(dtb_end);
            for i in 0..count as usize {
                let entry = HEADER_BYTES + i * COPY_BYTES;
                if get(bytes, entry) & COPY_IN_PLACE != 0 {
                    continue;
                }
                let Some(end) = at.checked_add(get(bytes, entry + 8)).filter(|&e| e <= len) else { break };
                let sum = checksum(&bytes[at as usize..end as usize]);
                put(bytes, entry + 32, sum);
                at = align8(end);
            }
        }
        let sum = checksum(&bytes[HEADER_BYTES..table_end as usize]);
        put(bytes, W_TABLE_SUM * 8, sum);
    }
    let sum = checksum(&bytes[HEADER_SUM_FROM..HEADER_BYTES]);
    put(bytes, W_HEADER_SUM * 8, sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const KERNEL: [u8; 3] = [1, 2, 3];
    const ROOT: [u8; 9] = [4; 9];
    const DTB: [u8; 2] = [0xd0, 0x0d];

    fn info() -> BootInfo {
        BootInfo {
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
            cores: 2,
        }
    }

    fn loads() -> [Load<'static>; 2] {
        [Load { dest: 0x6000_0000, data: &KERNEL, memsz: 0x1000 }, Load { dest: 0xbffc_a000, data: &ROOT, memsz: 9 }]
    }

    fn sample(placement: Placement) -> Vec<u8> {
        encode(&info(), &loads(), Some(&DTB), placement)
    }

    /// Everything a loader would do before trusting the payload, with `memory` standing in
    /// for the destinations of copies in place.
    fn check_all(bytes: &[u8], memory: &dyn Fn(&Copy) -> Vec<u8>) -> Result<(), PayloadError> {
        let p = Payload::parse(bytes)?;
        for c in p.copies() {
            match p.source_bytes(&c) {
                Some(b) => c.verify(b)?,
                None => c.verify(&memory(&c))?,
            }
        }
        Ok(())
    }

    fn placed(c: &Copy) -> Vec<u8> {
        loads().iter().find(|l| l.dest == c.dest).unwrap().data.to_vec()
    }

    #[test]
    fn round_trip_with_bytes_in_the_payload() {
        let bytes = sample(Placement::Payload);
        assert_eq!(bytes.len() as u64, encoded_len(&loads(), Some(&DTB), Placement::Payload));
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.info, info());
        assert_eq!(p.ram(), &[(0x6000_0000, 0xc000_0000)]);
        let copies: Vec<_> = p.copies().collect();
        assert_eq!(copies.len(), 2);
        assert_eq!((copies[0].index, copies[0].dest, copies[0].memsz, copies[0].filesz), (0, 0x6000_0000, 0x1000, 3));
        assert!(matches!(copies[0].source, Source::Payload { offset } if offset % 8 == 0));
        assert_eq!(p.source_bytes(&copies[0]), Some(&KERNEL[..]));
        assert_eq!(p.source_bytes(&copies[1]), Some(&ROOT[..]));
        assert_eq!(p.embedded_dtb(), Some(&DTB[..]));
        for c in &copies {
            c.verify(p.source_bytes(c).unwrap()).unwrap();
        }
        assert_eq!(Header::parse(&bytes).unwrap().total, bytes.len() as u64);
    }

    #[test]
    fn round_trip_with_copies_in_place() {
        let bytes = sample(Placement::InPlace);
        assert_eq!(bytes.len() as u64, encoded_len(&loads(), Some(&DTB), Placement::InPlace));
        // Header, two table entries and the DTB: no segment bytes.
        assert_eq!(bytes.len(), (HEADER_BYTES + 2 * COPY_BYTES + DTB.len()).next_multiple_of(8));
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.info, info());
        let copies: Vec<_> = p.copies().collect();
        assert_eq!(copies.len(), 2);
        for (c, l) in copies.iter().zip(loads()) {
            assert_eq!((c.source, c.dest, c.filesz, c.memsz), (Source::InPlace, l.dest, l.data.len() as u64, l.memsz));
            assert_eq!(p.source_bytes(c), None);
            c.verify(l.data).unwrap();
        }
        assert_eq!(p.embedded_dtb(), Some(&DTB[..]));
        check_all(&bytes, &placed).unwrap();
    }

    #[test]
    fn every_single_bit_flip_in_the_payload_is_detected() {
        for placement in [Placement::Payload, Placement::InPlace] {
            let bytes = sample(placement);
            check_all(&bytes, &placed).unwrap();
            for bit in 0..bytes.len() * 8 {
                let mut bad = bytes.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(check_all(&bad, &placed).is_err(), "{placement:?}: bit {bit} of {} bytes", bytes.len());
            }
        }
    }

    #[test]
    fn corrupted_bytes_in_place_are_detected_and_named() {
        let bytes = sample(Placement::InPlace);
        for index in 0..2 {
            let loads = loads();
            for bit in 0..loads[index].data.len() * 8 {
                let memory = |c: &Copy| {
                    let mut m = placed(c);
                    if c.index == index {
                        m[bit / 8] ^= 1 << (bit % 8);
                    }
                    m
                };
                let err = check_all(&bytes, &memory).unwrap_err();
                assert!(
                    matches!(err, PayloadError::CopyChecksum { index: i, dest, in_place: true, .. }
                        if i == index && dest == loads[index].dest),
                    "{err:?}"
                );
            }
        }
        // Bytes missing at the destination (a truncated segment) are detected too.
        let short = |c: &Copy| placed(c)[..c.filesz as usize - 1].to_vec();
        assert!(check_all(&bytes, &short).is_err());
        let err = check_all(&bytes, &|c: &Copy| {
            let mut m = placed(c);
            if c.index == 1 {
                m[8] = 0;
            }
            m
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            alloc::format!(
                "payload: copy 1 to 0xbffca000: checksum of its bytes at its destination {:#018x}, table says {:#018x} (image corrupted)",
                checksum(&[4, 4, 4, 4, 4, 4, 4, 4, 0]),
                checksum(&ROOT)
            )
        );
    }

    #[test]
    fn corrupted_bytes_in_the_payload_name_the_copy() {
        let bytes = sample(Placement::Payload);
        let p = Payload::parse(&bytes).unwrap();
        let c = p.copies().nth(1).unwrap();
        let Source::Payload { offset } = c.source else { panic!("{c:?}") };
        let mut bad = bytes.clone();
        bad[offset as usize + 4] ^= 0x40;
        let err = check_all(&bad, &placed).unwrap_err();
        assert!(
            matches!(err, PayloadError::CopyChecksum { index: 1, dest: 0xbffc_a000, in_place: false, .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("payload: copy 1 to 0xbffca000: checksum of its bytes in the payload"));
    }

    #[test]
    fn truncation_is_detected() {
        for placement in [Placement::Payload, Placement::InPlace] {
            let bytes = sample(placement);
            for cut in [bytes.len() - 1, bytes.len() - 8, HEADER_BYTES + 1, HEADER_BYTES] {
                assert_eq!(
                    Payload::parse(&bytes[..cut]).err(),
                    Some(PayloadError::Truncated { need: bytes.len() as u64, have: cut as u64 }),
                    "{placement:?}: cut at {cut}"
                );
            }
            assert_eq!(Payload::parse(&bytes[..100]).err(), Some(PayloadError::Truncated { need: 256, have: 100 }));
            // What a loader sees after a short load: the right length, garbage at the end.
            let mut garbage = bytes.clone();
            let n = garbage.len();
            garbage[n - 8..].copy_from_slice(&[0xaa; 8]);
            assert!(check_all(&garbage, &placed).is_err(), "{placement:?}");
        }
    }

    #[test]
    fn other_damage_is_named() {
        let bytes = sample(Placement::Payload);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::NoMagic));
        let mut bad = bytes.clone();
        bad[8] = 9;
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::Version { found: 9 }));
        let mut bad = bytes.clone();
        bad[W_UART * 8] ^= 1;
        assert!(matches!(Payload::parse(&bad), Err(PayloadError::Checksum { part: "header", .. })));
        let mut bad = bytes.clone();
        bad[HEADER_BYTES + 2 * 8] ^= 1; // dest of copy 0
        assert!(matches!(Payload::parse(&bad), Err(PayloadError::Checksum { part: "copy table", .. })));
        let mut bad = bytes.clone();
        bad[HEADER_BYTES + 2 * COPY_BYTES] ^= 1;
        assert!(matches!(Payload::parse(&bad), Err(PayloadError::Checksum { part: "device tree", .. })));
    }

    #[test]
    fn inconsistent_tables_with_valid_checksums_are_refused() {
        let bytes = sample(Placement::Payload);
        let entry = |i: usize, w: usize| (HEADER_BYTES + i * COPY_BYTES) / 8 + w;
        let set = |b: &mut Vec<u8>, w: usize, v: u64| b[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
        // A copy whose bytes run past the end.
        let mut bad = bytes.clone();
        set(&mut bad, entry(0, 1), u64::MAX);
        reseal(&mut bad);
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "copy" }));
        // A file size larger than the memory size.
        let mut bad = bytes.clone();
        set(&mut bad, entry(1, 3), 8);
        reseal(&mut bad);
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "copy" }));
        // One copy marked in place while its bytes are still in the payload: the layout
        // no longer accounts for every byte.
        let mut bad = bytes.clone();
        set(&mut bad, entry(1, 0), COPY_IN_PLACE);
        reseal(&mut bad);
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "total" }));
        // A file size one short: its last byte is now in a gap, which must be zero.
        let mut bad = bytes.clone();
        set(&mut bad, entry(0, 1), 2);
        reseal(&mut bad);
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "padding" }));
        // Flags this loader does not know.
        let mut bad = bytes.clone();
        set(&mut bad, entry(0, 0), 2);
        reseal(&mut bad);
        assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "copy flags" }));
        // No core, or more cores than the loader has stacks for.
        for cores in [0, MAX_CORES + 1] {
            let mut bad = bytes.clone();
            set(&mut bad, W_CORES, cores);
            reseal(&mut bad);
            assert_eq!(Payload::parse(&bad).err(), Some(PayloadError::BadField { field: "cores" }), "{cores}");
        }
    }

    #[test]
    fn reseal_makes_every_checksum_match_and_leaves_a_sealed_payload_alone() {
        for placement in [Placement::Payload, Placement::InPlace] {
            let bytes = sample(placement);
            let mut same = bytes.clone();
            reseal(&mut same);
            assert_eq!(same, bytes, "{placement:?}");
            // Any prefix: lengths that run past the end are left alone, nothing panics.
            for n in 0..bytes.len() {
                let mut cut = bytes[..n].to_vec();
                reseal(&mut cut);
            }
        }
        // A changed byte of a copy and of the DTB, and a changed header word: all sealed again.
        let mut bad = sample(Placement::Payload);
        let c = Payload::parse(&bad).unwrap().copies().nth(1).unwrap();
        let Source::Payload { offset } = c.source else { panic!("{c:?}") };
        bad[offset as usize] ^= 1;
        bad[HEADER_BYTES + 2 * COPY_BYTES] ^= 1;
        bad[W_UART * 8] ^= 1;
        reseal(&mut bad);
        let p = Payload::parse(&bad).unwrap();
        assert_eq!(p.info.uart, info().uart ^ 1);
        for c in p.copies() {
            c.verify(p.source_bytes(&c).unwrap()).unwrap();
        }
    }
}
