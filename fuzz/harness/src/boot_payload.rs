//! Target `boot_payload`: what the loader does with the payload `capvisor image` appended to
//! it (`loader/src/start.rs`, `loader_main`), in its order: [`Header::parse`] of the first
//! [`payload::HEADER_BYTES`], [`Payload::parse`] of the `total` bytes the header claims,
//! the device tree ([`Fdt::from_bytes`], `used_size`, the PL011's `reg`, the slot check,
//! `set_total_size` on the copy), the page tables ([`RangeSet`]s of RAM and the loader,
//! [`pagetable::build_boot_map`] over an arena as large as the loader's), then each copy:
//! [`Copy::verify`] of the bytes in the payload, and the destination arithmetic the loader
//! does without checks because the parser promised it cannot overflow.
//!
//! Input: one mode byte, then the payload. Mode bit 0 set: the payload's checksums are made
//! to match first ([`payload::reseal`]), so that mutated fields reach the checks behind
//! them; clear: the bytes as they are (the checksum checks themselves).
//!
//! With no device tree in the payload the loader reads one from memory (`x0` or the probe
//! address); here a fixed QEMU-like tree stands in for it, so the steps after it still run.

use std::sync::OnceLock;

use boot_image::fdt::{self, Fdt};
use boot_image::pagetable::{self, Builder, RangeSet, Table};
use boot_image::payload::{self, Copy, Header, Payload, Source};

/// Where the loader is linked (`loader/link.ld`, `LOADER_BASE`); its payload follows it.
const LOADER_START: u64 = 0x4800_0000;
/// The loader's image before the payload, as `capvisor image` pads it.
const LOADER_BYTES: u64 = 0x2_0000;
/// Page tables in the loader's arena (`loader/src/start.rs`, `TABLES`).
const TABLES: usize = 24;

/// A tree as QEMU leaves it: memory and a PL011.
fn memory_dtb() -> &'static [u8] {
    static DTB: OnceLock<Vec<u8>> = OnceLock::new();
    // Not a finding if it fails: the harness's own configuration no longer passes the checks.
    DTB.get_or_init(|| crate::seeds::host_dtb().unwrap_or_else(|e| panic!("fuzz harness: {e}")))
}

/// One input.
pub fn run(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let mut bytes = bytes.to_vec();
    if mode & 1 != 0 {
        payload::reseal(&mut bytes);
    }
    load(&bytes);
}

/// The loader's steps on `image`, the bytes from `__payload_start` on.
fn load(image: &[u8]) {
    let header = match Header::parse(&image[..image.len().min(payload::HEADER_BYTES)]) {
        Ok(h) => h,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // The loader reads `total` bytes of memory; past the input there is nothing to read.
    let bytes = usize::try_from(header.total).ok().and_then(|t| image.get(..t)).unwrap_or(image);
    let p = match Payload::parse(bytes) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let info = p.info;
    let payload_start = LOADER_START + LOADER_BYTES;
    let loader_end = payload_start + header.total;

    let dtb = p.embedded_dtb().unwrap_or(memory_dtb());
    if !device_tree(dtb, &info) {
        return;
    }

    let mut normal = RangeSet::<8>::new();
    let mut window = RangeSet::<8>::new();
    for &(s, e) in p.ram() {
        if normal.insert(s, e).and_then(|_| window.insert(s, e)).is_err() {
            return;
        }
    }
    if normal.insert(LOADER_START, loader_end).is_err() {
        return;
    }
    let mut arena = vec![Table::EMPTY; TABLES];
    let arena_pa = LOADER_START + 0x1_0000;
    let mut b = Builder::new(&mut arena, arena_pa);
    if let Err(e) = pagetable::build_boot_map(&mut b, &normal, info.kernel_offset, &window) {
        let _ = e.to_string();
        return;
    }
    let _ = (b.root_pa(), b.tables_used());

    for c in p.copies() {
        copy(&p, &c);
    }
}

/// The device tree steps; `false` where the loader halts.
fn device_tree(dtb: &[u8], info: &payload::BootInfo) -> bool {
    let fdt = match Fdt::from_bytes(dtb) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    let used = match fdt.used_size() {
        Ok(n) => n,
        Err(_) => return false,
    };
    let dtb = &dtb[..used];
    let dtb_size = used as u64;
    let slot = info.dtb_slot_end - info.dtb_slot_start;
    let page_up = |x: u64| (x + pagetable::PAGE_BYTES - 1) & !(pagetable::PAGE_BYTES - 1);
    if page_up(dtb_size) > slot {
        return false;
    }
    let _ = fdt.compatible_reg("arm,pl011");
    let _dtb_paddr = info.dtb_slot_end - page_up(dtb_size);
    let mut copy = dtb.to_vec();
    fdt::set_total_size(&mut copy[..fdt::HEADER_BYTES], used as u32);
    // What the root task then reads from the same tree.
    let _ = (fdt.first_memory(), fdt.compatible_gic_irq("arm,pl011"), fdt.compatible_reg("arm,cortex-a15-gic"));
    true
}

/// One copy: checked where its bytes are, then placed (arithmetic only).
fn copy(p: &Payload<'_>, c: &Copy) {
    if let Some(data) = p.source_bytes(c)
        && let Err(e) = c.verify(data)
    {
        let _ = e.to_string();
        return;
    }
    // The loader's own arithmetic, unchecked there: the parser promised `filesz <= memsz`
    // and that `dest + memsz` does not overflow.
    let written_from = match c.source {
        Source::InPlace => c.dest + c.filesz,
        Source::Payload { .. } => c.dest,
    };
    let zeroed = usize::try_from(c.memsz - c.filesz);
    let end = c.dest + c.memsz;
    let _ = (written_from, zeroed, end);
}
