//! Where the kernel put the root task's own image: the frame capability behind each page.
//!
//! seL4 maps the page-rounded span of the image's loadable segments from its first page on,
//! hands the frame capabilities in page order in bootinfo's `userImageFrames`, and maps the
//! IPC buffer in the page right after the last image page. So the image starts at
//! `ipcBuffer - 4096 * len(userImageFrames)`, and the page at `vaddr` is backed by frame
//! `(vaddr - start) / 4096` of that region.
//!
//! Code that unmaps or copies its own image frames first checks that layout against the page
//! the linker put the image's first byte in ([`own_image_frame`], [`check_own_layout`]):
//! frames are found by position, so a disagreement must stop it, not pick the wrong frame.
//!
//! Owns: that arithmetic and that check. Never touches: the frames (callers map, unmap or
//! copy them).

use sel4::object::PAGE_BITS;
use sel4::{BootInfo, Slot, VirtAddr};

const PAGE: u64 = 1 << PAGE_BITS;

/// The first page of the image, as the kernel laid it out.
pub fn image_start(bi: &BootInfo<'_>) -> Option<VirtAddr> {
    let frames = bi.user_image_frames();
    bi.ipc_buffer_addr().checked_sub(frames.len().checked_mul(PAGE)?).map(VirtAddr)
}

/// The slot of the frame capability backing the image page at `vaddr` (page aligned), or
/// `None` if `vaddr` is not a page of the image.
pub fn image_frame(bi: &BootInfo<'_>, vaddr: VirtAddr) -> Option<Slot> {
    let frames = bi.user_image_frames();
    let start = image_start(bi)?.get();
    if !vaddr.get().is_multiple_of(PAGE) || vaddr.get() < start {
        return None;
    }
    let i = (vaddr.get() - start) / PAGE;
    (i < frames.len()).then(|| Slot::new(frames.start.index() + i))
}

/// `Ok` when the kernel laid the image out from `linked`, the page the image was linked to
/// start at; else `Err(linked)`.
pub fn check_layout(bi: &BootInfo<'_>, linked: VirtAddr) -> Result<(), VirtAddr> {
    if image_start(bi) == Some(linked) { Ok(()) } else { Err(linked) }
}

/// [`image_frame`] after [`check_layout`]: `Err` names the address that has no frame (the
/// linked start when the layouts disagree).
pub fn checked_image_frame(bi: &BootInfo<'_>, linked: VirtAddr, vaddr: VirtAddr) -> Result<Slot, VirtAddr> {
    check_layout(bi, linked)?;
    image_frame(bi, vaddr).ok_or(vaddr)
}

/// The page the root task's image was linked to start at: the page of its entry `_start`,
/// which the linker script puts first.
#[cfg(target_os = "none")]
pub fn linked_start() -> VirtAddr {
    unsafe extern "C" {
        /// The runtime's entry point (`rt.rs`).
        fn _start();
    }
    VirtAddr((_start as *const () as u64) & !(PAGE - 1))
}

/// [`check_layout`] of the running root task.
#[cfg(target_os = "none")]
pub fn check_own_layout(bi: &BootInfo<'_>) -> Result<(), VirtAddr> {
    check_layout(bi, linked_start())
}

/// [`checked_image_frame`] of the running root task: the frame behind its own page `vaddr`.
#[cfg(target_os = "none")]
pub fn own_image_frame(bi: &BootInfo<'_>, vaddr: VirtAddr) -> Result<Slot, VirtAddr> {
    checked_image_frame(bi, linked_start(), vaddr)
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::vec::Vec;
    use sel4::SlotRegion;
    use sel4::bootinfo::BootInfoWriter;

    fn bootinfo(frames: SlotRegion, ipc: u64) -> Vec<u8> {
        let w = BootInfoWriter {
            empty: SlotRegion { start: Slot::new(150), end: Slot::new(65536) },
            cnode_size_bits: 16,
            untyped_start: Slot::new(76),
            user_image_frames: frames,
            ipc_buffer_addr: ipc,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        w.write(&[], &mut bytes);
        bytes
    }

    #[test]
    fn frames_in_page_order_from_the_image_start() {
        let bytes = bootinfo(SlotRegion { start: Slot::new(21), end: Slot::new(76) }, 0x43_7000);
        let bi = BootInfo::from_bytes(&bytes).unwrap();
        assert_eq!(image_start(&bi), Some(VirtAddr(0x40_0000)));
        assert_eq!(image_frame(&bi, VirtAddr(0x40_0000)), Some(Slot::new(21)));
        assert_eq!(image_frame(&bi, VirtAddr(0x43_6000)), Some(Slot::new(75)));
        // The IPC buffer, below the image, unaligned: no image frame.
        assert_eq!(image_frame(&bi, VirtAddr(0x43_7000)), None);
        assert_eq!(image_frame(&bi, VirtAddr(0x3f_f000)), None);
        assert_eq!(image_frame(&bi, VirtAddr(0x40_0800)), None);
    }

    #[test]
    fn frames_are_only_given_when_the_layout_matches_the_link_address() {
        let bytes = bootinfo(SlotRegion { start: Slot::new(21), end: Slot::new(76) }, 0x43_7000);
        let bi = BootInfo::from_bytes(&bytes).unwrap();
        let linked = VirtAddr(0x40_0000);
        assert_eq!(check_layout(&bi, linked), Ok(()));
        assert_eq!(checked_image_frame(&bi, linked, VirtAddr(0x40_1000)), Ok(Slot::new(22)));
        assert_eq!(checked_image_frame(&bi, linked, VirtAddr(0x43_7000)), Err(VirtAddr(0x43_7000)));
        // Linked one page higher than the kernel's layout: every page would be off by one.
        let off = VirtAddr(0x40_1000);
        assert_eq!(check_layout(&bi, off), Err(off));
        assert_eq!(checked_image_frame(&bi, off, VirtAddr(0x40_1000)), Err(off));
    }
}
