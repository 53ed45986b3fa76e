//! The placement plan: where every byte of the kernel, the root task and the device tree
//! goes in physical memory, checked before anything is written.
//!
//! Rules (seL4's boot protocol on AArch64, as `init_kernel` reads it):
//! - kernel segments go to their `p_paddr`; the kernel runs at `p_vaddr`, and every segment
//!   must share one `vaddr - paddr` offset (the kernel window);
//! - the root task's page-rounded virtual footprint goes to the top of the last RAM range;
//!   the kernel gets its physical bounds, `pv_offset = paddr - vaddr` and the virtual entry;
//! - the DTB slot sits directly below the root task (the kernel wants its reserved regions
//!   ascending: kernel image, DTB, user image);
//! - nothing overlaps anything else, the loader and the DTB the loader finds included, and
//!   everything the kernel is told about lies in RAM.
//!
//! Owns: the checks and the resulting [`Plan`]. Never touches: files or memory.

use alloc::vec::Vec;

use crate::elf::Elf;
use crate::payload::{self, BootInfo, Load, MAX_RAM, Placement};
use crate::{Error, Image, Part, PhysRange, Region};

/// Page size of the placement.
pub const PAGE: u64 = 4096;

/// What the plan is made from.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    /// The kernel ELF.
    pub kernel: &'a [u8],
    /// The root task ELF.
    pub root_task: &'a [u8],
    /// The kernel's RAM (platform `memory` regions), ascending.
    pub ram: &'a [PhysRange],
    /// The loader image, from its first byte to the start of the payload.
    pub loader: PhysRange,
    /// Bytes reserved for the device tree below the root task.
    pub dtb_max_bytes: u64,
    /// A device tree packed into the payload, if any.
    pub embedded_dtb: Option<&'a [u8]>,
    /// Where the loader looks for a DTB left by the firmware (QEMU places it at the base of
    /// RAM for ELF images), and how many bytes it may occupy there.
    pub dtb_probe: Option<PhysRange>,
    /// The console UART used before a DTB is read.
    pub uart: u64,
    /// `TCR_EL2` for the kernel's configuration.
    pub tcr_el2: u64,
    /// Cores the kernel was built for (`MAX_NUM_NODES`).
    pub cores: u64,
}

/// A checked plan, ready to be encoded as a payload.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// Every placed region (segments, DTB slot, loader including its payload).
    pub regions: Vec<Region>,
    /// Each loadable segment: destination, file bytes, memory size.
    pub copies: Vec<Load<'a>>,
    /// What the loader hands the kernel.
    pub boot: BootInfo,
    /// The packed device tree, if any.
    pub embedded_dtb: Option<&'a [u8]>,
}

const fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(page_down)
}

fn in_ram(ram: &[PhysRange], r: PhysRange) -> bool {
    ram.iter().any(|m| m.start <= r.start && r.end <= m.end)
}

impl<'a> Plan<'a> {
    /// Places everything and checks the result.
    pub fn new(input: &PlanInput<'a>) -> Result<Self, Error> {
        let kernel = Elf::parse(input.kernel).map_err(|err| Error::Elf { image: Image::Kernel, err })?;
        let root = Elf::parse(input.root_task).map_err(|err| Error::Elf { image: Image::RootTask, err })?;
        let ram = input.ram;
        let last = *ram.last().ok_or(Error::NoRam)?;
        if ram.len() > MAX_RAM {
            return Err(Error::TooManyRamRanges { count: ram.len(), max: MAX_RAM });
        }
        if !(1..=payload::MAX_CORES).contains(&input.cores) {
            return Err(Error::Cores { cores: input.cores, max: payload::MAX_CORES });
        }
        let mut regions = Vec::new();
        let mut copies = Vec::new();

        // Kernel: physical addresses as linked, one window offset.
        let mut kernel_offset = None;
        for s in kernel.load_segments() {
            let off = s.vaddr.wrapping_sub(s.paddr);
            if *kernel_offset.get_or_insert(off) != off {
                return Err(Error::KernelOffsetMismatch { index: s.index });
            }
            let range = PhysRange { start: s.paddr, end: s.paddr + s.memsz };
            let region = Region { part: Part::KernelSegment(s.index), range };
            if !in_ram(ram, range) {
                return Err(Error::OutsideRam { region });
            }
            regions.push(region);
            copies.push(Load { dest: s.paddr, data: kernel.segment_data(&s), memsz: s.memsz });
        }
        let kernel_offset = kernel_offset.unwrap_or(0);
        let (kv_lo, kv_hi) = kernel.vaddr_bounds();
        if !(kv_lo..kv_hi).contains(&kernel.entry()) {
            return Err(Error::EntryOutside { image: Image::Kernel, entry: kernel.entry() });
        }

        // Root task: its page-rounded footprint at the top of the last RAM range.
        let (v_lo, v_hi) = root.vaddr_bounds();
        if !(v_lo..v_hi).contains(&root.entry()) {
            return Err(Error::EntryOutside { image: Image::RootTask, entry: root.entry() });
        }
        let v_lo = page_down(v_lo);
        let v_hi = page_up(v_hi).ok_or(Error::EntryOutside { image: Image::RootTask, entry: v_hi })?;
        let footprint = v_hi - v_lo;
        let ui_end = page_down(last.end);
        let ui_start = ui_end.checked_sub(footprint).filter(|&s| s >= last.start).ok_or(Error::OutsideRam {
            region: Region {
                part: Part::RootTaskImage,
                range: PhysRange { start: ui_end.wrapping_sub(footprint), end: ui_end },
            },
        })?;
        let pv_offset = ui_start.wrapping_sub(v_lo);
        regions.push(Region { part: Part::RootTaskImage, range: PhysRange { start: ui_start, end: ui_end } });
        let mut root_segments = Vec::new();
        for s in root.load_segments() {
            let dest = s.vaddr.wrapping_add(pv_offset);
            root_segments.push(Region {
                part: Part::RootTaskSegment(s.index),
                range: PhysRange { start: dest, end: dest + s.memsz },
            });
            copies.push(Load { dest, data: root.segment_data(&s), memsz: s.memsz });
        }
        // Segments inside the image must not overwrite each other either.
        check_disjoint(&root_segments)?;

        // DTB slot below the root task.
        let slot_bytes = page_up(input.dtb_max_bytes).unwrap_or(u64::MAX);
        let slot = PhysRange { start: ui_start.saturating_sub(slot_bytes), end: ui_start };
        let slot_region = Region { part: Part::DtbSlot, range: slot };
        if ui_start < slot_bytes || !in_ram(ram, slot) {
            return Err(Error::OutsideRam { region: slot_region });
        }
        if let Some(d) = input.embedded_dtb {
            if d.len() as u64 > input.dtb_max_bytes {
                return Err(Error::DtbTooLarge { size: d.len() as u64, max: input.dtb_max_bytes });
            }
            crate::fdt::Fdt::from_bytes(d).map_err(Error::Dtb)?;
        }
        regions.push(slot_region);

        let mut plan = Plan {
            regions,
            copies,
            boot: BootInfo {
                kernel_entry: kernel.entry(),
                kernel_offset,
                ui_p_start: ui_start,
                ui_p_end: ui_end,
                pv_offset,
                v_entry: root.entry(),
                dtb_slot_start: slot.start,
                dtb_slot_end: slot.end,
                dtb_probe: input.dtb_probe.map_or(0, |r| r.start),
                uart: input.uart,
                tcr_el2: input.tcr_el2,
                ram: [(0, 0); MAX_RAM],
                ram_count: ram.len(),
                cores: input.cores,
            },
            embedded_dtb: input.embedded_dtb,
        };
        for (i, r) in ram.iter().enumerate() {
            plan.boot.ram[i] = (r.start, r.end);
        }

        // The loader with its payload (at its largest: with the segment bytes in it), and
        // where the firmware left the DTB. Segments the firmware places itself
        // (`Placement::InPlace`) are the segment regions above, so the same checks cover
        // them: in RAM, clear of the loader, the DTB slot and the firmware's DTB.
        let payload_len = payload::encoded_len(&plan.copies, plan.embedded_dtb, Placement::Payload);
        let loader = PhysRange { start: input.loader.start, end: input.loader.end.saturating_add(payload_len) };
        plan.regions.push(Region { part: Part::Loader, range: loader });
        if let Some(p) = input.dtb_probe {
            plan.regions.push(Region { part: Part::DtbSource, range: p });
        }
        check_disjoint(&plan.regions)?;
        Ok(plan)
    }

    /// The kernel image as seL4 reserves it at boot: from its first segment's physical
    /// address to the page-rounded end of its last (`get_p_reg_kernel_img`, up to `ki_end`).
    pub fn kernel_image(&self) -> PhysRange {
        let segs = self.regions.iter().filter(|r| matches!(r.part, Part::KernelSegment(_)));
        let (lo, hi) = segs.fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.range.start), hi.max(r.range.end)));
        PhysRange { start: lo, end: page_up(hi).unwrap_or(hi) }
    }

    /// Where the device tree of `dtb_bytes` lands: at the top of the slot, page aligned, as
    /// the loader copies it (`loader/src/start.rs`).
    pub fn dtb(&self, dtb_bytes: u64) -> PhysRange {
        let end = self.boot.dtb_slot_end;
        let start = end.saturating_sub(page_up(dtb_bytes).unwrap_or(u64::MAX));
        PhysRange { start, end: start.saturating_add(dtb_bytes) }
    }

    /// Where seL4 16.0.0 (AArch64, hypervisor, 44-bit physical addresses: a 4 KiB VSpace and
    /// three levels of paging below it) will make the root task's boot objects, for a device
    /// tree of `dtb_bytes` (the slot's size gives an upper bound) and a root CNode of
    /// 2^`cnode_size_bits` slots, as `init_freemem` and `create_rootserver_objects` do: RAM
    /// less the kernel image, the device tree and the user image; the topmost free region
    /// whose end, less the objects' size rounded down to their largest alignment, still lies
    /// in it; the objects from there. `None` if no region fits (the kernel would not boot).
    pub fn boot_objects(&self, dtb_bytes: u64, cnode_size_bits: u32) -> Option<PhysRange> {
        const PAGE_BITS: u32 = 12;
        let b = &self.boot;
        let extra = if dtb_bytes == 0 { 0 } else { 16 + dtb_bytes };
        let extra_bits = if extra == 0 {
            0
        } else {
            let rounded = page_up(extra)?;
            let mut msb = 63 - rounded.leading_zeros();
            if extra > 1 << msb {
                msb += 1;
            }
            msb
        };
        // The initial thread's virtual region: the image, the IPC buffer, the bootinfo frame
        // and the extra bootinfo.
        let v_start = b.ui_p_start.wrapping_sub(b.pv_offset);
        let v_end = b.ui_p_end.wrapping_sub(b.pv_offset) + 2 * PAGE + if extra_bits > 0 { 1 << extra_bits } else { 0 };
        let n_paging = |bits: u32| {
            let lo = v_start >> bits;
            let hi = (v_end + (1 << bits) - 1) >> bits;
            hi - lo
        };
        let tables = n_paging(39) + n_paging(30) + n_paging(21);
        let cnode_bits = cnode_size_bits + 5;
        let size = (1u64 << cnode_bits)
            + (1 << 11) // TCB
            + 3 * PAGE // IPC buffer, bootinfo frame, ASID pool
            + if extra_bits > 0 { 1 << extra_bits } else { 0 }
            + PAGE // VSpace
            + tables * PAGE;
        let max_bits = cnode_bits.max(PAGE_BITS).max(extra_bits);
        let kernel = self.kernel_image();
        let dtb = self.dtb(dtb_bytes);
        let mut reserved = [(kernel.start, kernel.end), (dtb.start, dtb.end), (b.ui_p_start, b.ui_p_end)];
        reserved.sort_unstable();
        let mut free: Vec<(u64, u64)> = Vec::new();
        for &(rs, re) in &b.ram[..b.ram_count] {
            let mut at = rs;
            for &(s, e) in &reserved {
                if e <= at || s >= re || s == e {
                    continue;
                }
                if s > at {
                    free.push((at, s));
                }
                at = at.max(e);
            }
            if at < re {
                free.push((at, re));
            }
        }
        free.iter().rev().find_map(|&(s, e)| {
            let unaligned = e.checked_sub(size)?;
            let start = unaligned & !((1u64 << max_bits) - 1);
            (start >= s).then_some(PhysRange { start, end: start + size })
        })
    }

    /// The payload bytes for this plan, with the segments' bytes in it or left to the
    /// firmware to place.
    pub fn encode(&self, placement: Placement) -> Vec<u8> {
        payload::encode(&self.boot, &self.copies, self.embedded_dtb, placement)
    }
}

fn check_disjoint(regions: &[Region]) -> Result<(), Error> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if a.range.start < b.range.end && b.range.start < a.range.end {
                return Err(Error::Overlap { a: *a, b: *b });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::write::{OutSegment, executable};
    use crate::elf::{EM_AARCH64, ElfError};

    const RAM: [PhysRange; 1] = [PhysRange { start: 0x6000_0000, end: 0xc000_0000 }];
    const KOFF: u64 = 0x80_0000_0000;

    fn kernel(paddr: u64, memsz: u64) -> Vec<u8> {
        let code = [0u8; 64];
        executable(EM_AARCH64, paddr + KOFF, &[OutSegment { vaddr: paddr + KOFF, paddr, data: &code, memsz, flags: 7 }])
    }

    fn root_task(segs: &[(u64, u64)]) -> Vec<u8> {
        let code = [0u8; 32];
        let segs: Vec<_> = segs
            .iter()
            .map(|&(vaddr, memsz)| OutSegment { vaddr, paddr: vaddr, data: &code, memsz, flags: 5 })
            .collect();
        executable(EM_AARCH64, segs[0].vaddr, &segs)
    }

    fn input<'a>(k: &'a [u8], r: &'a [u8]) -> PlanInput<'a> {
        PlanInput {
            kernel: k,
            root_task: r,
            ram: &RAM,
            loader: PhysRange { start: 0x4800_0000, end: 0x4802_0000 },
            dtb_max_bytes: 1 << 20,
            embedded_dtb: None,
            dtb_probe: Some(PhysRange { start: 0x4000_0000, end: 0x4010_0000 }),
            uart: 0x900_0000,
            tcr_el2: crate::pagetable::tcr_el2(false),
            cores: 1,
        }
    }

    /// The boot recorded in `platforms/qemu-arm-virt/bootinfo-capvisor.txt` (debug kernel, a
    /// 7568-byte device tree): the root task's image at 0xbf7ab000, its boot objects from the
    /// root CNode at 0xbf400000 to the end of the TCB at 0xbf60d800.
    #[test]
    fn boot_objects_land_where_the_recorded_boot_put_them() {
        let mut boot = BootInfo {
            kernel_entry: 0,
            kernel_offset: 0,
            ui_p_start: 0xbf7a_b000,
            ui_p_end: 0xc000_0000,
            pv_offset: 0xbf7a_b000 - 0x40_0000,
            v_entry: 0x40_0000,
            dtb_slot_start: 0xbf6a_b000,
            dtb_slot_end: 0xbf7a_b000,
            dtb_probe: 0,
            uart: 0,
            tcr_el2: 0,
            ram: [(0, 0); payload::MAX_RAM],
            ram_count: 1,
            cores: 1,
        };
        boot.ram[0] = (0x6000_0000, 0xc000_0000);
        let kernel = PhysRange { start: 0x6000_0000, end: 0x6023_e123 };
        let plan = Plan {
            regions: alloc::vec![Region { part: Part::KernelSegment(0), range: kernel }],
            copies: Vec::new(),
            boot,
            embedded_dtb: None,
        };
        assert_eq!(plan.kernel_image(), PhysRange { start: 0x6000_0000, end: 0x6023_f000 });
        assert_eq!(plan.dtb(7568), PhysRange { start: 0xbf7a_9000, end: 0xbf7a_ad90 });
        assert_eq!(plan.boot_objects(7568, 16), Some(PhysRange { start: 0xbf40_0000, end: 0xbf60_d800 }));
        // A 64 KiB tree: the same start, a larger extra bootinfo; a 1 MiB one moves them down.
        let upper = plan.boot_objects(64 << 10, 16).expect("fits");
        assert_eq!(upper.start, 0xbf40_0000);
        assert!(upper.end > 0xbf60_d800, "{upper}");
        assert_eq!(plan.boot_objects(1 << 20, 16).map(|r| r.start), Some(0xbf20_0000));
        // No room at all: the kernel would not boot.
        let mut tiny = plan.clone();
        tiny.boot.ram[0] = (0xbf60_0000, 0xc000_0000);
        tiny.regions.clear();
        assert_eq!(tiny.boot_objects(7568, 16), None);
    }

    #[test]
    fn sel4_layout() {
        let k = kernel(0x6000_0000, 0x23_f000);
        let r = root_task(&[(0x40_0000, 0x2_0000), (0x42_0000, 0x1_6000)]);
        let plan = Plan::new(&input(&k, &r)).unwrap();
        let b = plan.boot;
        assert_eq!(b.kernel_entry, 0x80_6000_0000);
        assert_eq!(b.kernel_offset, KOFF);
        assert_eq!((b.ui_p_start, b.ui_p_end), (0xbffc_a000, 0xc000_0000));
        assert_eq!(b.pv_offset, 0xbffc_a000 - 0x40_0000);
        assert_eq!(b.v_entry, 0x40_0000);
        assert_eq!((b.dtb_slot_start, b.dtb_slot_end), (0xbfeca000, 0xbffc_a000));
        assert_eq!(plan.copies[0].dest, 0x6000_0000);
        assert_eq!(plan.copies[2].dest, 0xbffc_a000 + 0x2_0000);
        for placement in [Placement::Payload, Placement::InPlace] {
            let p = payload::Payload::parse(&plan.encode(placement)).map(|p| p.info).unwrap();
            assert_eq!(p, b);
        }
    }

    #[test]
    fn overlapping_root_task_segments_are_refused() {
        let k = kernel(0x6000_0000, 0x23_f000);
        // Both root task segments map the page at 0x401000.
        let r = root_task(&[(0x40_0000, 0x2000), (0x40_1000, 0x1000)]);
        let err = Plan::new(&input(&k, &r)).unwrap_err();
        match err {
            Error::Overlap { a, b } => {
                assert_eq!((a.part, b.part), (Part::RootTaskSegment(0), Part::RootTaskSegment(1)));
            }
            e => panic!("{e:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("root-task ELF segment 0 [") && msg.contains("overlaps root-task ELF segment 1 ["),
            "{msg}"
        );
    }

    #[test]
    fn overlapping_kernel_segments_are_refused() {
        let code = [0u8; 16];
        let k = executable(
            EM_AARCH64,
            0x80_6000_0000,
            &[
                OutSegment { vaddr: 0x80_6000_0000, paddr: 0x6000_0000, data: &code, memsz: 0x2000, flags: 5 },
                OutSegment { vaddr: 0x80_6000_1000, paddr: 0x6000_1000, data: &code, memsz: 0x1000, flags: 6 },
            ],
        );
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let err = Plan::new(&input(&k, &r)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Overlap {
                    a: Region { part: Part::KernelSegment(0), .. },
                    b: Region { part: Part::KernelSegment(1), .. }
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn kernel_outside_ram_is_refused() {
        let k = kernel(0x5000_0000, 0x1000);
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let err = Plan::new(&input(&k, &r)).unwrap_err();
        assert_eq!(
            err,
            Error::OutsideRam {
                region: Region {
                    part: Part::KernelSegment(0),
                    range: PhysRange { start: 0x5000_0000, end: 0x5000_1000 }
                }
            }
        );
        assert!(err.to_string().contains("kernel ELF segment 0 [0x50000000..0x50001000)"), "{err}");
        assert!(err.to_string().contains("outside RAM"), "{err}");
    }

    #[test]
    fn root_task_larger_than_ram_is_refused() {
        let k = kernel(0x6000_0000, 0x1000);
        let r = root_task(&[(0x40_0000, 0x7000_0000)]);
        let err = Plan::new(&input(&k, &r)).unwrap_err();
        assert!(matches!(err, Error::OutsideRam { region: Region { part: Part::RootTaskImage, .. } }), "{err:?}");
    }

    #[test]
    fn kernel_overlapping_the_root_task_or_loader_is_refused() {
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let k = kernel(0xbfff_0000, 0x1_0000);
        let err = Plan::new(&input(&k, &r)).unwrap_err();
        assert!(matches!(err, Error::Overlap { .. }), "{err:?}");
        assert!(err.to_string().contains("overlaps"), "{err}");
        let k = kernel(0x6000_0000, 0x1000);
        let mut i = input(&k, &r);
        i.loader = PhysRange { start: 0x5fff_0000, end: 0x6000_8000 };
        let err = Plan::new(&i).unwrap_err();
        match err {
            Error::Overlap { a, b } => {
                assert_eq!(a.part, Part::KernelSegment(0));
                assert_eq!(b.part, Part::Loader);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn segments_in_the_firmware_dtb_area_are_refused() {
        // QEMU puts its DTB at the base of RAM for ELF kernels; a segment the firmware
        // places there (in place) or the loader copies there must not meet it.
        const LOW_RAM: [PhysRange; 1] = [PhysRange { start: 0x4000_0000, end: 0xc000_0000 }];
        let k = kernel(0x4008_0000, 0x1000);
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let mut i = input(&k, &r);
        i.ram = &LOW_RAM;
        let err = Plan::new(&i).unwrap_err();
        match err {
            Error::Overlap { a, b } => {
                assert_eq!((a.part, b.part), (Part::KernelSegment(0), Part::DtbSource));
                assert_eq!(b.range, PhysRange { start: 0x4000_0000, end: 0x4010_0000 });
            }
            e => panic!("{e:?}"),
        }
        i.dtb_probe = None;
        assert!(Plan::new(&i).is_ok());
    }

    #[test]
    fn the_loader_region_holds_the_larger_payload() {
        // The flat binary carries the segment bytes, the ELF does not; the plan must hold
        // for both, so the loader's region is checked with the bytes in it.
        let k = kernel(0x6000_0000, 0x1000);
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let plan = Plan::new(&input(&k, &r)).unwrap();
        let small = plan.encode(Placement::InPlace).len() as u64;
        let large = plan.encode(Placement::Payload).len() as u64;
        assert!(small < large, "{small} {large}");
        let loader = plan.regions.iter().find(|r| r.part == Part::Loader).unwrap();
        assert_eq!(loader.range, PhysRange { start: 0x4800_0000, end: 0x4802_0000 + large });
        // A loader that ends where only the smaller payload still fits below the kernel.
        let mut i = input(&k, &r);
        i.loader = PhysRange { start: 0x5ff0_0000, end: 0x6000_0000 - small };
        let err = Plan::new(&i).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Overlap { a: Region { part: Part::KernelSegment(0), .. }, b: Region { part: Part::Loader, .. } }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn dtb_too_large_is_refused() {
        let k = kernel(0x6000_0000, 0x1000);
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let big = alloc::vec![0u8; 5000];
        let mut i = input(&k, &r);
        i.dtb_max_bytes = 4096;
        i.embedded_dtb = Some(&big);
        let err = Plan::new(&i).unwrap_err();
        assert_eq!(err, Error::DtbTooLarge { size: 5000, max: 4096 });
        assert_eq!(err.to_string(), "device tree: 5000 bytes, the DTB slot holds 4096 (raise --dtb-max)");
    }

    #[test]
    fn cores_reach_the_payload_and_are_bounded() {
        let k = kernel(0x6000_0000, 0x1000);
        let r = root_task(&[(0x40_0000, 0x1000)]);
        let mut i = input(&k, &r);
        i.cores = 2;
        let plan = Plan::new(&i).unwrap();
        let p = payload::Payload::parse(&plan.encode(Placement::Payload)).map(|p| p.info).unwrap();
        assert_eq!(p.cores, 2);
        for cores in [0, payload::MAX_CORES + 1] {
            i.cores = cores;
            let err = Plan::new(&i).unwrap_err();
            assert_eq!(err, Error::Cores { cores, max: payload::MAX_CORES });
        }
        assert_eq!(
            Error::Cores { cores: 9, max: 8 }.to_string(),
            "kernel: MAX_NUM_NODES is 9, the loader starts 1 to 8 cores"
        );
    }

    #[test]
    fn non_aarch64_elf_is_refused() {
        let code = [0u8; 16];
        let x86 =
            executable(62, 0x1000, &[OutSegment { vaddr: 0x1000, paddr: 0x1000, data: &code, memsz: 16, flags: 5 }]);
        let k = kernel(0x6000_0000, 0x1000);
        let err = Plan::new(&input(&k, &x86)).unwrap_err();
        assert_eq!(err, Error::Elf { image: Image::RootTask, err: ElfError::WrongMachine { machine: 62 } });
        assert_eq!(err.to_string(), "root-task ELF: e_machine=62, need 183 (AArch64)");
        let err = Plan::new(&input(&x86, &k)).unwrap_err();
        assert!(err.to_string().starts_with("kernel ELF: e_machine=62"), "{err}");
    }

    #[test]
    fn entry_outside_image_is_refused() {
        let code = [0u8; 16];
        let r = executable(
            EM_AARCH64,
            0x9000,
            &[OutSegment { vaddr: 0x1000, paddr: 0x1000, data: &code, memsz: 16, flags: 5 }],
        );
        let k = kernel(0x6000_0000, 0x1000);
        assert_eq!(
            Plan::new(&input(&k, &r)).unwrap_err(),
            Error::EntryOutside { image: Image::RootTask, entry: 0x9000 }
        );
    }
}
