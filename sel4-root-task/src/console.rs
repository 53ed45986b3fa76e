//! Bringing up the root task's console before `main`: a 4 KiB device frame at the UART's
//! registers, retyped from the device untyped that holds them, mapped (uncached) in place of
//! one page of the root task's own image.
//!
//! Why over an image page: the kernel already mapped every page of the image and built the
//! translation tables for them, so the registers need one `Page_Unmap` of the image frame
//! behind a page the image never uses as memory (a page-aligned page of `.bss`) and one
//! `Page_Map` of the UART frame there: no table to make, no address range to choose, no
//! untyped RAM spent.
//!
//! In two steps, as the HAL's pool does: [`plan`] is pure (which untyped holds the UART, the
//! padding objects that move its watermark up to the UART's page, the slots, the image page
//! and its frame), [`bring_up`] performs a plan with any [`Kernel`], so the host tests run it
//! on the seL4 model and check what the kernel state becomes.
//!
//! Owns, for the root task's whole life, what [`Reserved`] lists: the device untyped it
//! retyped, the slots at the start of bootinfo's empty region it filled (padding untyped and
//! the UART frame), and the image frame it unmapped. Never touches: any other untyped or slot,
//! and the UART's registers (that is [`crate::pl011`]'s job, on the target).

use core::fmt;

use sel4::cap_type::{Frame, Untyped};
use sel4::object::{MAX_UNTYPED_BITS, MIN_UNTYPED_BITS, PAGE_BITS};
use sel4::{
    BootInfo, CNodeSlot, Cap, CapRights, Kernel, ObjectBlueprint, PhysAddr, Slot, SlotRegion, UntypedDesc, VirtAddr,
    VmAttributes, init_cap,
};

use crate::image::image_frame;

const PAGE: u64 = 1 << PAGE_BITS;

/// What the runtime made before `main` and keeps: everything in bootinfo's untyped list and
/// empty region but this is the root task's to use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reserved {
    /// The device untyped the console frame came from: it has children, so nothing else may
    /// retype it (an allocator that took it for fresh would misplace every object).
    pub untyped: Option<Slot>,
    /// Slots the runtime filled, at the start of bootinfo's empty region.
    pub slots: SlotRegion,
    /// The image frame unmapped to make room for the UART's registers (still in its slot of
    /// `userImageFrames`, mapped nowhere).
    pub image_frame: Option<Slot>,
}

impl Reserved {
    /// Bootinfo's empty slots without the runtime's.
    pub fn empty(&self, bi: &BootInfo<'_>) -> SlotRegion {
        let e = bi.empty();
        let start =
            if self.slots.is_empty() { e.start } else { Slot::new(e.start.index().max(self.slots.end.index())) };
        SlotRegion { start: Slot::new(start.index().min(e.end.index())), end: e.end }
    }

    /// Bootinfo's untyped, each with the slot of its capability, without the runtime's.
    pub fn untyped<'a>(&self, bi: &BootInfo<'a>) -> impl Iterator<Item = (Slot, UntypedDesc)> + 'a {
        let first = bi.untyped().start.index();
        let withheld = self.untyped;
        bi.untyped_list()
            .enumerate()
            .map(move |(i, d)| (Slot::new(first + i as u64), d))
            .filter(move |(s, _)| Some(*s) != withheld)
    }
}

/// Why the console could not be brought up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConsoleError {
    /// No untyped in bootinfo holds the UART's page.
    NoUntyped(PhysAddr),
    /// The untyped holding it is RAM, not device memory: not a UART.
    NotDevice(PhysAddr),
    /// The page meant for the registers is not a page of the image.
    NotInImage(VirtAddr),
    /// Bootinfo's empty region is too small for the padding and the frame.
    NoSlots {
        /// Slots the plan needs.
        need: u64,
        /// Empty slots there are.
        have: u64,
    },
    /// A kernel call of [`bring_up`] failed.
    Kernel {
        /// Which one.
        step: Step,
        /// The kernel's error.
        error: sel4::Error,
    },
}

/// The kernel calls of [`bring_up`], for errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// `Untyped_Retype` of a padding untyped.
    Padding,
    /// `Untyped_Retype` of the UART frame.
    Frame,
    /// `Page_Unmap` of the image frame.
    UnmapImage,
    /// `Page_Map` of the UART frame.
    MapUart,
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::NoUntyped(p) => write!(f, "no untyped holds the UART at {p}"),
            ConsoleError::NotDevice(p) => write!(f, "the UART at {p} lies in RAM untyped, not device untyped"),
            ConsoleError::NotInImage(v) => write!(f, "the console page {v} is not a page of the root task's image"),
            ConsoleError::NoSlots { need, have } => {
                write!(f, "the console needs {need} empty slots, bootinfo has {have}")
            }
            ConsoleError::Kernel { step, error } => {
                let what = match step {
                    Step::Padding => "Untyped_Retype (padding up to the UART)",
                    Step::Frame => "Untyped_Retype (UART frame)",
                    Step::UnmapImage => "Page_Unmap (image page)",
                    Step::MapUart => "Page_Map (UART frame)",
                };
                write!(f, "{what}: {error:?}")
            }
        }
    }
}

/// Sizes (log2 of bytes) of the untyped objects that, retyped one after the other from an
/// untyped whose watermark is at `from`, move the watermark to `to`: each the largest power
/// of two aligned at the current watermark that does not pass `to` (the kernel aligns each
/// new object to its size, so a larger one would skip past `to`, a smaller one would only
/// need more slots). At most two per bit of `to - from`. Both must be 16-byte aligned
/// (`MIN_UNTYPED_BITS`), as the kernel aligns every untyped.
#[derive(Clone, Debug)]
pub struct Padding {
    at: u64,
    to: u64,
}

impl Padding {
    /// The padding from `from` to `to`.
    pub fn new(from: u64, to: u64) -> Self {
        Padding { at: from, to }
    }
}

impl Iterator for Padding {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.at >= self.to {
            return None;
        }
        let aligned = if self.at == 0 { u64::BITS - 1 } else { self.at.trailing_zeros() };
        let fits = u64::BITS - 1 - (self.to - self.at).leading_zeros();
        let bits = aligned.min(fits).min(MAX_UNTYPED_BITS);
        if bits < MIN_UNTYPED_BITS {
            // Unaligned input: nothing the kernel could place; stop rather than loop.
            self.at = self.to;
            return None;
        }
        self.at += 1 << bits;
        Some(bits)
    }
}

/// Where the console goes: every number [`bring_up`] needs, decided before any kernel call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConsolePlan {
    /// The UART's registers.
    pub uart: PhysAddr,
    /// The device untyped holding them, and what bootinfo says of it.
    pub untyped: (Slot, UntypedDesc),
    /// Padding untyped, then the UART frame (the last slot).
    pub slots: SlotRegion,
    /// The image page that will map the registers, and the frame behind it now.
    pub page: (VirtAddr, Slot),
}

impl ConsolePlan {
    /// The page holding the registers.
    pub fn frame_paddr(&self) -> PhysAddr {
        PhysAddr(self.uart.get() & !(PAGE - 1))
    }

    /// The padding objects, in retype order.
    pub fn padding(&self) -> Padding {
        Padding::new(self.untyped.1.paddr.get(), self.frame_paddr().get())
    }

    /// The slot of the UART frame.
    pub fn frame_slot(&self) -> Slot {
        Slot::new(self.slots.end.index() - 1)
    }

    /// Where the registers are once mapped.
    pub fn registers(&self) -> VirtAddr {
        VirtAddr(self.page.0.get() + (self.uart.get() & (PAGE - 1)))
    }

    /// What the runtime keeps once the plan is performed.
    pub fn reserved(&self) -> Reserved {
        Reserved { untyped: Some(self.untyped.0), slots: self.slots, image_frame: Some(self.page.1) }
    }
}

/// Plans the console for the UART at `uart`, mapped at the image page `page`, with slots from
/// the start of bootinfo's empty region.
pub fn plan(bi: &BootInfo<'_>, uart: PhysAddr, page: VirtAddr) -> Result<ConsolePlan, ConsoleError> {
    let frame = uart.get() & !(PAGE - 1);
    let first = bi.untyped().start.index();
    let (i, desc) = bi
        .untyped_list()
        .enumerate()
        .find(|(_, d)| d.paddr.get() <= frame && frame < d.end())
        .ok_or(ConsoleError::NoUntyped(uart))?;
    if !desc.is_device {
        return Err(ConsoleError::NotDevice(uart));
    }
    let image = image_frame(bi, page).ok_or(ConsoleError::NotInImage(page))?;
    let need = Padding::new(desc.paddr.get(), frame).count() as u64 + 1;
    let empty = bi.empty();
    if need > empty.len() {
        return Err(ConsoleError::NoSlots { need, have: empty.len() });
    }
    let slots = SlotRegion { start: empty.start, end: Slot::new(empty.start.index() + need) };
    Ok(ConsolePlan { uart, untyped: (Slot::new(first + i as u64), desc), slots, page: (page, image) })
}

/// Performs `plan`: the padding retypes, the UART frame, `Page_Unmap` of the image frame and
/// `Page_Map` of the UART frame in its place (read-write, uncached: device memory, never
/// executable). Returns the registers' address. `1 + padding + 2` kernel calls.
///
/// On failure, what was done is undone (created capabilities deleted, the image frame mapped
/// back) as far as the kernel allows, and the error names the step.
pub fn bring_up<K: Kernel>(k: &mut K, plan: &ConsolePlan) -> Result<VirtAddr, ConsoleError> {
    let ut: Cap<Untyped> = plan.untyped.0.cap();
    let fail = |k: &mut K, made: u64, unmapped: bool, step: Step, error: sel4::Error| {
        if unmapped {
            let _ = k.page_map(
                plan.page.1.cap(),
                init_cap::VSPACE.cap(),
                plan.page.0,
                CapRights::READ_WRITE,
                VmAttributes::DEFAULT.union(VmAttributes::EXECUTE_NEVER),
            );
        }
        for i in (0..made).rev() {
            let _ = k.cnode_delete(CNodeSlot::root(Slot::new(plan.slots.start.index() + i)));
        }
        ConsoleError::Kernel { step, error }
    };
    let mut made = 0u64;
    for bits in plan.padding() {
        let dest = Slot::new(plan.slots.start.index() + made);
        if let Err(e) = k.untyped_retype(ut, ObjectBlueprint::Untyped { size_bits: bits }, dest, 1) {
            return Err(fail(k, made, false, Step::Padding, e));
        }
        made += 1;
    }
    if let Err(e) = k.untyped_retype(ut, ObjectBlueprint::SmallPage, plan.frame_slot(), 1) {
        return Err(fail(k, made, false, Step::Frame, e));
    }
    made += 1;
    let image: Cap<Frame> = plan.page.1.cap();
    if let Err(e) = k.page_unmap(image) {
        return Err(fail(k, made, false, Step::UnmapImage, e));
    }
    let uart: Cap<Frame> = plan.frame_slot().cap();
    if let Err(e) =
        k.page_map(uart, init_cap::VSPACE.cap(), plan.page.0, CapRights::READ_WRITE, VmAttributes::EXECUTE_NEVER)
    {
        return Err(fail(k, made, true, Step::MapUart, e));
    }
    Ok(plan.registers())
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;
    use super::*;
    use alloc::vec::Vec;
    use sel4_model::Model;

    #[test]
    fn padding_moves_the_watermark_in_aligned_powers_of_two() {
        let p: Vec<u32> = Padding::new(0x900_0000, 0x900_5000).collect();
        assert_eq!(p, [14, 12]);
        assert_eq!(Padding::new(0x900_0000, 0x900_0000).count(), 0);
        // From an unaligned watermark: small pieces up to alignment, then large ones.
        let p: Vec<u32> = Padding::new(0x1000, 0x10_0000).collect();
        let mut at = 0x1000u64;
        for bits in &p {
            assert_eq!(at % (1 << bits), 0, "{p:?}");
            at += 1 << bits;
        }
        assert_eq!(at, 0x10_0000);
        assert!(p.len() <= 2 * 20, "{p:?}");
        // From 0 (any alignment) to the UART inside QEMU virt's first device untyped.
        let p: Vec<u32> = Padding::new(0, 0x900_0000).collect();
        assert_eq!(p, [27, 24]);
    }

    /// The recorded capvisor boot of QEMU virt, and the last page of its image's `.bss`.
    fn model() -> (Model, VirtAddr) {
        let m = Model::qemu_arm_virt_capvisor();
        let bi = m.bootinfo();
        let last = bi.ipc_buffer_addr() - PAGE;
        (m, VirtAddr(last))
    }

    fn run(uart: u64) -> (Model, ConsolePlan, VirtAddr) {
        let (mut m, page) = model();
        let bytes = m.bootinfo_bytes().to_vec();
        let bi = BootInfo::from_bytes(&bytes).unwrap();
        let plan = plan(&bi, PhysAddr(uart), page).unwrap();
        let regs = bring_up(&mut m, &plan).unwrap();
        (m, plan, regs)
    }

    #[test]
    fn the_uart_frame_replaces_the_image_page_uncached() {
        let (m, plan, regs) = run(0x900_0000);
        // QEMU virt's PL011 starts its device untyped: no padding, one slot.
        assert_eq!(plan.untyped.1.paddr, PhysAddr(0x900_0000));
        assert_eq!(plan.slots.len(), 1);
        assert_eq!(regs, plan.page.0);
        let t = m.translate(init_cap::VSPACE.cap(), plan.page.0).expect("mapped");
        assert_eq!(t.paddr, PhysAddr(0x900_0000));
        assert!(!t.attrs.contains(VmAttributes::PAGE_CACHEABLE), "{t:?}");
        assert!(t.attrs.contains(VmAttributes::EXECUTE_NEVER), "{t:?}");
        assert_eq!(m.watermark(plan.untyped.0), Some(PAGE));
        // The rest of the image is as the kernel left it.
        let before = plan.page.0.get() - PAGE;
        assert!(m.translate(init_cap::VSPACE.cap(), VirtAddr(before)).is_some_and(|t| t.paddr != PhysAddr(0x900_0000)));
        let r = plan.reserved();
        let bytes = m.bootinfo_bytes().to_vec();
        let bi = BootInfo::from_bytes(&bytes).unwrap();
        assert_eq!(r.empty(&bi).start, Slot::new(bi.empty().start.index() + 1));
        assert_eq!(r.untyped(&bi).count(), bi.untyped_list().len() - 1);
        assert!(r.untyped(&bi).all(|(s, _)| s != plan.untyped.0));
    }

    #[test]
    fn a_uart_inside_its_untyped_gets_padding_below_it() {
        let (m, plan, regs) = run(0x900_5040);
        assert_eq!(plan.slots.len(), 3, "{plan:?}");
        assert_eq!(regs, VirtAddr(plan.page.0.get() + 0x40));
        let t = m.translate(init_cap::VSPACE.cap(), plan.page.0).expect("mapped");
        assert_eq!(t.paddr, PhysAddr(0x900_5000));
        assert_eq!(m.watermark(plan.untyped.0), Some(0x6000));
    }

    #[test]
    fn plans_refuse_ram_nothing_and_pages_outside_the_image() {
        let (m, page) = model();
        let bi = m.bootinfo();
        assert_eq!(plan(&bi, PhysAddr(0xa000_0000), page).unwrap_err(), ConsoleError::NotDevice(PhysAddr(0xa000_0000)));
        assert!(matches!(plan(&bi, PhysAddr(0x900_0000), VirtAddr(0x1000)), Err(ConsoleError::NotInImage(_))));
        assert!(matches!(plan(&bi, PhysAddr(0xffff_ffff_0000), page), Err(ConsoleError::NoUntyped(_))));
    }

    #[test]
    fn a_failed_step_is_undone() {
        let (mut m, page) = model();
        let bytes = m.bootinfo_bytes().to_vec();
        let bi = BootInfo::from_bytes(&bytes).unwrap();
        let p = plan(&bi, PhysAddr(0x900_5000), page).unwrap();
        // The frame's slot is taken: the two padding untyped are made, then the frame fails.
        m.cnode_copy(CNodeSlot::root(p.frame_slot()), init_cap::TCB, CapRights::ALL).unwrap();
        let free = m.free_slots();
        let e = bring_up(&mut m, &p).unwrap_err();
        assert_eq!(e, ConsoleError::Kernel { step: Step::Frame, error: sel4::Error::DeleteFirst });
        assert_eq!(m.free_slots(), free);
        assert_eq!(m.descendants(p.untyped.0), 0);
        assert!(m.translate(init_cap::VSPACE.cap(), page).is_some_and(|t| t.paddr != PhysAddr(0x900_5000)));
    }
}
