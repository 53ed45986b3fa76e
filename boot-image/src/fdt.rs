//! Just enough of a flattened device tree reader for the loader and the image tool: the
//! header (size checks), the first memory node, the `reg` of the first node with a given
//! `compatible` string (the console UART), translated through its ancestors' `ranges`, and
//! the `reg` of every CPU node (the MPIDR the loader starts each core by).
//!
//! Owns: bounds-checked walking of the structure block. Never touches: the tree's contents
//! beyond reading (the kernel gets the bytes unchanged).

use core::fmt;

/// `FDT_MAGIC`, big-endian at offset 0.
pub const MAGIC: u32 = 0xd00d_feed;
/// Bytes of the header the loader must read before it knows the total size.
pub const HEADER_BYTES: usize = 40;

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
const MAX_DEPTH: usize = 16;

/// What is wrong with a device tree blob.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdtError {
    /// The magic number is wrong (not a DTB).
    BadMagic {
        /// The big-endian word found.
        found: u32,
    },
    /// Fewer bytes than the header's `totalsize` (or than a header).
    Truncated {
        /// Bytes the blob needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// The structure or strings block is malformed at this byte offset.
    BadStructure {
        /// Offset into the blob.
        offset: usize,
    },
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtError::BadMagic { found } => write!(f, "device tree: magic {found:#010x}, need {MAGIC:#010x}"),
            FdtError::Truncated { need, have } => write!(f, "device tree: {have} bytes, header says {need}"),
            FdtError::BadStructure { offset } => write!(f, "device tree: malformed structure at byte {offset}"),
        }
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The `totalsize` field of a header, after checking the magic.
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    if header.len() < HEADER_BYTES {
        return Err(FdtError::Truncated { need: HEADER_BYTES, have: header.len() });
    }
    let magic = be32(header, 0).unwrap_or(0);
    if magic != MAGIC {
        return Err(FdtError::BadMagic { found: magic });
    }
    Ok(be32(header, 4).unwrap_or(0) as usize)
}

/// Rewrites the `totalsize` field of a header (after the used part was copied).
pub fn set_total_size(header: &mut [u8], size: u32) {
    if header.len() >= 8 {
        header[4..8].copy_from_slice(&size.to_be_bytes());
    }
}

/// A checked device tree blob.
#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    bytes: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
    struct_off: usize,
}

/// A `reg` entry: base and size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reg {
    /// Base address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl<'a> Fdt<'a> {
    /// Checks the header; `bytes` may be longer than the blob.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FdtError> {
        let total = total_size(bytes)?;
        if total > bytes.len() || total < HEADER_BYTES {
            return Err(FdtError::Truncated { need: total.max(HEADER_BYTES), have: bytes.len() });
        }
        let bytes = &bytes[..total];
        let field = |off| be32(bytes, off).unwrap_or(0) as usize;
        let (so, ss) = (field(8), field(36));
        let (to, ts) = (field(12), field(32));
        let structs = so.checked_add(ss).and_then(|e| bytes.get(so..e)).ok_or(FdtError::BadStructure { offset: 8 })?;
        let strings = to.checked_add(ts).and_then(|e| bytes.get(to..e)).ok_or(FdtError::BadStructure { offset: 12 })?;
        Ok(Fdt { bytes, structs, strings, struct_off: so })
    }

    /// The blob (exactly `totalsize` bytes).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes the blob's blocks actually use: the end of the last of the memory reservation
    /// map, structure and strings blocks. QEMU builds its DTB in a 1 MiB buffer and reports
    /// all of it as `totalsize`; copying only the used part (with `totalsize` patched, see
    /// [`set_total_size`]) keeps the kernel's extra bootinfo small.
    pub fn used_size(&self) -> Result<usize, FdtError> {
        let b = self.bytes;
        let field = |off| be32(b, off).unwrap_or(0) as usize;
        let mut end = field(8).saturating_add(field(36)).max(field(12).saturating_add(field(32)));
        // The reservation map: 16-byte (address, size) pairs ending with a zero pair.
        let mut off = field(16);
        loop {
            let entry = b.get(off..off + 16).ok_or(FdtError::BadStructure { offset: off })?;
            off += 16;
            if entry.iter().all(|&x| x == 0) {
                break;
            }
        }
        end = end.max(off).max(HEADER_BYTES);
        Ok(end.next_multiple_of(8).min(b.len()))
    }

    /// Visits every property as `(depth, node name, property name, value)`; nodes are entered
    /// depth-first in blob order. The callback returns `true` to stop.
    fn walk(&self, mut f: impl FnMut(usize, &'a [u8], &'a [u8], &'a [u8]) -> bool) -> Result<(), FdtError> {
        let s = self.structs;
        let bad = |off: usize| FdtError::BadStructure { offset: self.struct_off + off };
        let mut off = 0usize;
        let mut depth = 0usize;
        let mut names: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
        loop {
            let token = be32(s, off).ok_or(bad(off))?;
            off += 4;
            match token {
                BEGIN_NODE => {
                    let rest = s.get(off..).ok_or(bad(off))?;
                    let len = rest.iter().position(|&c| c == 0).ok_or(bad(off))?;
                    if depth >= MAX_DEPTH {
                        return Err(bad(off));
                    }
                    names[depth] = &rest[..len];
                    depth += 1;
                    off = (off + len + 1).next_multiple_of(4);
                }
                END_NODE => {
                    depth = depth.checked_sub(1).ok_or(bad(off))?;
                }
                PROP => {
                    let len = be32(s, off).ok_or(bad(off))? as usize;
                    let nameoff = be32(s, off + 4).ok_or(bad(off))? as usize;
                    let value = off.checked_add(8 + len).and_then(|e| s.get(off + 8..e)).ok_or(bad(off))?;
                    let pname = self.strings.get(nameoff..).ok_or(bad(off))?;
                    let pname = &pname[..pname.iter().position(|&c| c == 0).ok_or(bad(off))?];
                    if depth == 0 {
                        return Err(bad(off));
                    }
                    if f(depth, names[depth - 1], pname, value) {
                        return Ok(());
                    }
                    off = (off + 8 + len).next_multiple_of(4);
                }
                NOP => {}
                END => return Ok(()),
                _ => return Err(bad(off - 4)),
            }
        }
    }

    /// Finds the first node for which `select(node name, property name, value)` holds for
    /// some property and `value_of(new node?, depth, property name, value)` gives a value for
    /// some property, and returns that value.
    fn first_of<T>(
        &self,
        select: impl Fn(&[u8], &[u8], &[u8]) -> bool,
        mut value_of: impl FnMut(bool, usize, &'a [u8], &'a [u8]) -> Option<T>,
    ) -> Result<Option<T>, FdtError> {
        let mut found = None;
        // The node being looked at (depth, name), whether it matches, its value so far.
        let mut cur: (usize, &[u8], bool, Option<T>) = (0, &[], false, None);
        self.walk(|depth, node, prop, value| {
            let new_node = depth != cur.0 || !core::ptr::eq(node, cur.1);
            if new_node {
                cur = (depth, node, false, None);
            }
            if let Some(v) = value_of(new_node, depth, prop, value) {
                cur.3 = Some(v);
            }
            if select(node, prop, value) {
                cur.2 = true;
            }
            if cur.2 && cur.3.is_some() {
                found = cur.3.take();
                return true;
            }
            false
        })?;
        Ok(found)
    }

    /// The first `reg` entry of the first node `select` picks (see [`Self::first_of`]),
    /// decoded with the cell counts of its parent and translated to a CPU address through
    /// the `ranges` of every ancestor (the Raspberry Pi's tree lists its peripherals at
    /// VideoCore bus addresses, 0x7e..., that `/soc`'s `ranges` map to 0xfe...). An
    /// ancestor without `ranges`, or whose `ranges` cover no part of the address, leaves it
    /// as it is; an empty `ranges` is the identity.
    fn first_reg(&self, select: impl Fn(&[u8], &[u8], &[u8]) -> bool) -> Result<Option<Reg>, FdtError> {
        self.first_reg_where(select, |_| true)
    }

    /// Like [`Self::first_reg`], but the first entry of any `reg` of the selected nodes that
    /// `accept` takes (a `reg` property may list several).
    fn first_reg_where(
        &self,
        select: impl Fn(&[u8], &[u8], &[u8]) -> bool,
        accept: impl Fn(Reg) -> bool,
    ) -> Result<Option<Reg>, FdtError> {
        // Cells declared by the node at each depth, for its children (defaults 2 and 1),
        // and its `ranges`, if any.
        let mut cells = [(2u32, 1u32); MAX_DEPTH + 1];
        let mut ranges: [Option<&[u8]>; MAX_DEPTH + 1] = [None; MAX_DEPTH + 1];
        self.first_of(select, |new_node, depth, prop, value| {
            if new_node {
                cells[depth] = (2, 1);
                ranges[depth] = None;
            }
            match prop {
                b"#address-cells" => cells[depth].0 = be32(value, 0).unwrap_or(2),
                b"#size-cells" => cells[depth].1 = be32(value, 0).unwrap_or(1),
                b"ranges" => ranges[depth] = Some(value),
                b"reg" => {
                    let (ac, sc) = cells[depth - 1];
                    // Cell counts come from the blob: checked before any arithmetic on them.
                    if ac > 2 || sc > 2 || ac + sc == 0 {
                        return None;
                    }
                    let entry = ((ac + sc) * 4) as usize;
                    for e in value.chunks_exact(entry) {
                        let mut reg = read_reg(e, ac, sc)?;
                        // Up from the parent (depth - 1) to the root's children (depth 2):
                        // each level's ranges map its children's addresses to its parent's.
                        for level in (2..depth).rev() {
                            match ranges[level] {
                                None => break,
                                Some(r) => reg.base = translate(r, reg.base, cells[level], cells[level - 1].0),
                            }
                        }
                        if accept(reg) {
                            return Some(reg);
                        }
                    }
                    return None;
                }
                _ => {}
            }
            None
        })
    }

    /// The first `reg` of the first node whose `compatible` list contains `compat`.
    pub fn compatible_reg(&self, compat: &str) -> Result<Option<Reg>, FdtError> {
        self.first_reg(|_, prop, value| is_compatible(prop, value, compat))
    }

    /// The first interrupt of the first node whose `compatible` list contains `compat`, as a
    /// GIC interrupt ID: its `interrupts` property read with the Arm GIC binding's three cells
    /// (type, number, flags): an SPI (type 0) is `32 + number`, a PPI (type 1) `16 + number`.
    /// `None` when no such node has an `interrupts` property the binding can read.
    pub fn compatible_gic_irq(&self, compat: &str) -> Result<Option<u32>, FdtError> {
        self.first_of(
            |_, prop, value| is_compatible(prop, value, compat),
            |_, _, prop, value| match (prop, be32(value, 0), be32(value, 4)) {
                (b"interrupts", Some(0), Some(n)) => n.checked_add(32),
                (b"interrupts", Some(1), Some(n)) if n < 16 => Some(16 + n),
                _ => None,
            },
        )
    }

    /// The `reg` of every node with `device_type = "cpu"`, in tree order: the core's MPIDR
    /// affinity bits (the Arm CPU binding), read with the parent's `#address-cells`. Stores
    /// the first `out.len()` and returns how many there are.
    pub fn cpu_ids(&self, out: &mut [u64]) -> Result<usize, FdtError> {
        let mut cells = [2u32; MAX_DEPTH + 1];
        let mut count = 0usize;
        // The node being looked at: (depth, name), its device type is cpu, its reg.
        let mut cur: (usize, &[u8], bool, Option<u64>) = (0, &[], false, None);
        let mut flush = |cur: &(usize, &[u8], bool, Option<u64>)| {
            if let (true, Some(id)) = (cur.2, cur.3) {
                if let Some(slot) = out.get_mut(count) {
                    *slot = id;
                }
                count += 1;
            }
        };
        self.walk(|depth, node, prop, value| {
            if depth != cur.0 || !core::ptr::eq(node, cur.1) {
                flush(&cur);
                cur = (depth, node, false, None);
                cells[depth] = 2;
            }
            match prop {
                b"#address-cells" => cells[depth] = be32(value, 0).unwrap_or(2),
                b"device_type" => cur.2 = value.split(|&c| c == 0).next() == Some(b"cpu"),
                b"reg" => cur.3 = read_reg(value, cells[depth - 1], 0).map(|r| r.base),
                _ => {}
            }
            false
        })?;
        flush(&cur);
        Ok(count)
    }

    /// The first `reg` of the first memory node (`device_type = "memory"`).
    pub fn first_memory(&self) -> Result<Option<Reg>, FdtError> {
        self.first_reg(is_memory)
    }

    /// The memory range (a `reg` entry of a memory node) that holds all of `start..end`, if
    /// any: the Raspberry Pi's memory node lists two banks.
    pub fn memory_holding(&self, start: u64, end: u64) -> Result<Option<Reg>, FdtError> {
        self.first_reg_where(is_memory, |r| start >= r.base && end <= r.base.saturating_add(r.size))
    }
}

/// Whether the property marks a memory node (`device_type = "memory"`).
fn is_memory(_node: &[u8], prop: &[u8], value: &[u8]) -> bool {
    prop == b"device_type" && value.split(|&c| c == 0).next() == Some(b"memory")
}

/// Whether `prop` is `compatible` and its list holds `compat`.
fn is_compatible(prop: &[u8], value: &[u8], compat: &str) -> bool {
    prop == b"compatible" && value.split(|&c| c == 0).any(|s| s == compat.as_bytes())
}

/// `addr` (a child address) through a `ranges` value of (child address, parent address,
/// size) entries; `child` holds the node's own cell counts, `parent_ac` its parent's address
/// cells. An empty `ranges` is the identity; an address no entry covers stays as it is.
fn translate(ranges: &[u8], addr: u64, child: (u32, u32), parent_ac: u32) -> u64 {
    let (ac, sc) = child;
    // Cells of more than 64 bits are not addresses this reader handles.
    if ac > 2 || parent_ac > 2 || sc > 2 || ac + parent_ac + sc == 0 {
        return addr;
    }
    let entry = ((ac + parent_ac + sc) * 4) as usize;
    for e in ranges.chunks_exact(entry) {
        let Some(child_base) = read_cells(e, 0, ac) else { return addr };
        let Some(parent_base) = read_cells(e, ac as usize, parent_ac) else { return addr };
        let Some(size) = read_cells(e, (ac + parent_ac) as usize, sc) else { return addr };
        if addr >= child_base && addr - child_base < size {
            return parent_base.wrapping_add(addr - child_base);
        }
    }
    addr
}

/// `n` (0 to 2) big-endian cells from cell index `start` of `value`.
fn read_cells(value: &[u8], start: usize, n: u32) -> Option<u64> {
    let cell = |i: usize| be32(value, i * 4).map(u64::from);
    match n {
        0 => Some(0),
        1 => cell(start),
        2 => Some((cell(start)? << 32) | cell(start + 1)?),
        _ => None,
    }
}

fn read_reg(value: &[u8], address_cells: u32, size_cells: u32) -> Option<Reg> {
    let base = read_cells(value, 0, address_cells)?;
    let size = read_cells(value, address_cells as usize, size_cells)?;
    Some(Reg { base, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    fn qemu_like() -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("stdout-path", "/pl011@9000000").unwrap();
        w.end_node(chosen).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for (i, mpidr) in [0u32, 1, 0x100].into_iter().enumerate() {
            let c = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_u32("reg", mpidr).unwrap();
            w.property_string("enable-method", "psci").unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(cpus).unwrap();
        let m = w.begin_node("memory@40000000").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x8000_0000]).unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.end_node(m).unwrap();
        let u = w.begin_node("pl011@9000000").unwrap();
        w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
        w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()]).unwrap();
        w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
        w.end_node(u).unwrap();
        let t = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 0x104, 1, 14, 0x104]).unwrap();
        w.end_node(t).unwrap();
        let odd = w.begin_node("odd@0").unwrap();
        w.property_string("compatible", "test,odd").unwrap();
        w.property_array_u32("interrupts", &[7, 1, 4]).unwrap();
        w.end_node(odd).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn finds_memory_and_uart() {
        let blob = qemu_like();
        let fdt = Fdt::from_bytes(&blob).unwrap();
        assert_eq!(fdt.first_memory().unwrap(), Some(Reg { base: 0x4000_0000, size: 0x8000_0000 }));
        assert_eq!(fdt.compatible_reg("arm,pl011").unwrap(), Some(Reg { base: 0x900_0000, size: 0x1000 }));
        assert_eq!(fdt.compatible_reg("arm,primecell").unwrap(), Some(Reg { base: 0x900_0000, size: 0x1000 }));
        assert_eq!(fdt.compatible_reg("ns16550a").unwrap(), None);
        assert_eq!(total_size(&blob).unwrap(), blob.len());
        assert_eq!(fdt.used_size().unwrap(), blob.len());
    }

    /// The Raspberry Pi 4's shape: peripherals under `/soc` at VideoCore bus addresses with
    /// one-cell addresses, mapped to CPU addresses by `/soc`'s `ranges`.
    fn rpi4_like(soc_ranges: Option<&[u32]>) -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        let soc = w.begin_node("soc").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        if let Some(r) = soc_ranges {
            w.property_array_u32("ranges", r).unwrap();
        }
        let u = w.begin_node("serial@7e201000").unwrap();
        w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()]).unwrap();
        w.property_array_u32("reg", &[0x7e20_1000, 0x200]).unwrap();
        w.end_node(u).unwrap();
        let g = w.begin_node("gic@40041000").unwrap();
        w.property_string("compatible", "arm,gic-400").unwrap();
        w.property_array_u32("reg", &[0x4004_1000, 0x1000]).unwrap();
        w.end_node(g).unwrap();
        let o = w.begin_node("other@10").unwrap();
        w.property_string("compatible", "test,unmapped").unwrap();
        w.property_array_u32("reg", &[0x10, 0x10]).unwrap();
        w.end_node(o).unwrap();
        w.end_node(soc).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn memory_with_two_banks() {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        let m = w.begin_node("memory@0").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u32("reg", &[0, 0, 0x3b40_0000, 0, 0x4000_0000, 0x4000_0000]).unwrap();
        w.end_node(m).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let fdt = Fdt::from_bytes(&blob).unwrap();
        assert_eq!(fdt.first_memory().unwrap(), Some(Reg { base: 0, size: 0x3b40_0000 }));
        let second = Some(Reg { base: 0x4000_0000, size: 0x4000_0000 });
        assert_eq!(fdt.memory_holding(0x4000_0000, 0x6000_0000).unwrap(), second);
        assert_eq!(fdt.memory_holding(0x7fff_f000, 0x8000_0000).unwrap(), second);
        assert_eq!(fdt.memory_holding(0x1000, 0x2000).unwrap(), Some(Reg { base: 0, size: 0x3b40_0000 }));
        // Across the gap, or past the end: no bank holds it.
        assert_eq!(fdt.memory_holding(0x3b00_0000, 0x3c00_0000).unwrap(), None);
        assert_eq!(fdt.memory_holding(0x7fff_f000, 0x8000_1000).unwrap(), None);
    }

    #[test]
    fn reg_is_translated_through_ranges() {
        // bcm2711's /soc ranges: 0x7e000000 -> 0xfe000000 (24 MiB), 0x40000000 -> 0xff800000.
        let ranges = [0x7e00_0000, 0, 0xfe00_0000, 0x180_0000, 0x4000_0000, 0, 0xff80_0000, 0x80_0000];
        let blob = rpi4_like(Some(&ranges));
        let fdt = Fdt::from_bytes(&blob).unwrap();
        assert_eq!(fdt.compatible_reg("arm,pl011").unwrap(), Some(Reg { base: 0xfe20_1000, size: 0x200 }));
        assert_eq!(fdt.compatible_reg("arm,gic-400").unwrap(), Some(Reg { base: 0xff84_1000, size: 0x1000 }));
        // No range covers it: the address stays as the tree gives it.
        assert_eq!(fdt.compatible_reg("test,unmapped").unwrap(), Some(Reg { base: 0x10, size: 0x10 }));
        // Empty ranges: identity; no ranges: untranslated.
        for blob in [rpi4_like(Some(&[])), rpi4_like(None)] {
            let fdt = Fdt::from_bytes(&blob).unwrap();
            assert_eq!(fdt.compatible_reg("arm,pl011").unwrap(), Some(Reg { base: 0x7e20_1000, size: 0x200 }));
        }
    }

    #[test]
    fn huge_cell_counts_are_no_reg_not_an_overflow() {
        // The fuzzer's boot_payload find: #address-cells + #size-cells times 4 overflowed u32.
        for (ac, sc) in [(u32::MAX, 1), (1, u32::MAX), (0x4000_0000, 0x4000_0000), (3, 1), (0, 0)] {
            let mut w = vm_fdt::FdtWriter::new().unwrap();
            let root = w.begin_node("").unwrap();
            w.property_u32("#address-cells", ac).unwrap();
            w.property_u32("#size-cells", sc).unwrap();
            let u = w.begin_node("serial@0").unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property_array_u32("reg", &[0, 0x1000, 0, 0x1000]).unwrap();
            w.end_node(u).unwrap();
            w.end_node(root).unwrap();
            let blob = w.finish().unwrap();
            let fdt = Fdt::from_bytes(&blob).unwrap();
            assert_eq!(fdt.compatible_reg("arm,pl011").unwrap(), None, "cells ({ac}, {sc})");
        }
    }

    #[test]
    fn finds_interrupts_as_gic_ids() {
        let blob = qemu_like();
        let fdt = Fdt::from_bytes(&blob).unwrap();
        assert_eq!(fdt.compatible_gic_irq("arm,pl011").unwrap(), Some(33), "SPI 1");
        assert_eq!(fdt.compatible_gic_irq("arm,armv8-timer").unwrap(), Some(29), "PPI 13, the first of its list");
        assert_eq!(fdt.compatible_gic_irq("test,odd").unwrap(), None, "type 7 is neither SPI nor PPI");
        assert_eq!(fdt.compatible_gic_irq("ns16550a").unwrap(), None);
    }

    #[test]
    fn finds_every_cpu_by_its_mpidr() {
        let blob = qemu_like();
        let fdt = Fdt::from_bytes(&blob).unwrap();
        let mut ids = [u64::MAX; 4];
        assert_eq!(fdt.cpu_ids(&mut ids).unwrap(), 3);
        assert_eq!(ids, [0, 1, 0x100, u64::MAX]);
        // Fewer slots than cpus: counted, not stored.
        let mut one = [0u64; 1];
        assert_eq!(fdt.cpu_ids(&mut one).unwrap(), 3);
        assert_eq!(one, [0]);
    }

    #[test]
    fn padded_blob_shrinks_to_its_used_size() {
        let blob = qemu_like();
        let used = blob.len();
        let mut padded = blob.clone();
        padded.resize(1 << 20, 0);
        set_total_size(&mut padded, 1 << 20);
        let fdt = Fdt::from_bytes(&padded).unwrap();
        assert_eq!(fdt.as_bytes().len(), 1 << 20);
        let n = fdt.used_size().unwrap();
        assert!(n >= used && n < used + 8, "{n} vs {used}");
        let mut copy = padded[..n].to_vec();
        set_total_size(&mut copy, n as u32);
        let packed = Fdt::from_bytes(&copy).unwrap();
        assert_eq!(packed.first_memory().unwrap(), Some(Reg { base: 0x4000_0000, size: 0x8000_0000 }));
    }

    #[test]
    fn bad_blobs_are_refused() {
        let blob = qemu_like();
        assert_eq!(
            Fdt::from_bytes(&blob[..blob.len() - 1]).err(),
            Some(FdtError::Truncated { need: blob.len(), have: blob.len() - 1 })
        );
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(matches!(Fdt::from_bytes(&bad), Err(FdtError::BadMagic { .. })));
        // An unknown token in the structure block.
        let mut bad = blob.clone();
        let so = u32::from_be_bytes(bad[8..12].try_into().unwrap()) as usize;
        bad[so..so + 4].copy_from_slice(&7u32.to_be_bytes());
        let fdt = Fdt::from_bytes(&bad).unwrap();
        assert_eq!(fdt.first_memory(), Err(FdtError::BadStructure { offset: so }));
    }
}
