//! The bootinfo frame the kernel hands the root task: untyped list, slot regions, extra
//! bootinfo chunks (the device tree among them).
//!
//! Parsing works on a byte slice so it runs on the host against recorded or synthesised
//! bootinfo; on the target the runtime builds the slice from the pointer in `x0`.

use core::fmt;

use crate::addr::PhysAddr;
use crate::cap::{Slot, SlotRegion};
use crate::generated::config;

const WORD: usize = 8;
/// Bytes of the bootinfo frame proper; extra chunks follow it (`seL4_BootInfoFrameSize`).
pub const BOOTINFO_FRAME_SIZE: usize = 4096;
/// Extra bootinfo chunk id of the flattened device tree (`SEL4_BOOTINFO_HEADER_FDT`).
pub const EXTRA_ID_FDT: u64 = 6;
/// Extra bootinfo chunk id of padding (`SEL4_BOOTINFO_HEADER_PADDING`).
pub const EXTRA_ID_PADDING: u64 = 0;

// Word offsets of the fields of `seL4_BootInfo` (libsel4/include/sel4/bootinfo_types.h).
const W_EXTRA_LEN: usize = 0;
const W_NODE_ID: usize = 1;
const W_NUM_NODES: usize = 2;
const W_IPC_BUFFER: usize = 4;
const W_EMPTY: usize = 5;
const W_USER_IMAGE_FRAMES: usize = 9;
const W_USER_IMAGE_PAGING: usize = 11;
const W_EXTRA_BI_PAGES: usize = 15;
const W_CNODE_SIZE_BITS: usize = 17;
// MCS inserts `schedcontrol` (two words) before `untyped`.
const W_UNTYPED: usize = if config::KERNEL_MCS { 21 } else { 19 };
const W_UNTYPED_LIST: usize = W_UNTYPED + 2;
const UNTYPED_DESC_BYTES: usize = 16;
/// Length of `untypedList` in this configuration (`CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS`).
pub const MAX_UNTYPED: usize = config::MAX_NUM_BOOTINFO_UNTYPED_CAPS as usize;
const BOOTINFO_BYTES: usize = W_UNTYPED_LIST * WORD + MAX_UNTYPED * UNTYPED_DESC_BYTES;
const _: () = assert!(BOOTINFO_BYTES <= BOOTINFO_FRAME_SIZE);

/// The initial capabilities the kernel places in the root CNode (`seL4_RootCNodeCapSlots`).
pub mod init_cap {
    use crate::cap::Slot;
    /// `seL4_CapInitThreadTCB`
    pub const TCB: Slot = Slot::new(1);
    /// `seL4_CapInitThreadCNode`
    pub const CNODE: Slot = Slot::new(2);
    /// `seL4_CapInitThreadVSpace`
    pub const VSPACE: Slot = Slot::new(3);
    /// `seL4_CapIRQControl`
    pub const IRQ_CONTROL: Slot = Slot::new(4);
    /// `seL4_CapASIDControl`
    pub const ASID_CONTROL: Slot = Slot::new(5);
    /// `seL4_CapInitThreadASIDPool`
    pub const ASID_POOL: Slot = Slot::new(6);
    /// `seL4_CapBootInfoFrame`
    pub const BOOTINFO_FRAME: Slot = Slot::new(9);
    /// `seL4_CapInitThreadIPCBuffer`
    pub const IPC_BUFFER: Slot = Slot::new(10);
    /// `seL4_CapDomain`
    pub const DOMAIN: Slot = Slot::new(11);
    /// `seL4_NumInitialCaps`: the first slot not used by an initial capability.
    pub const NUM_INITIAL_CAPS: u64 = 16;
}

/// One entry of the untyped list.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct UntypedDesc {
    /// Physical base address.
    pub paddr: PhysAddr,
    /// log2 of the size in bytes.
    pub size_bits: u32,
    /// Device memory (only frames and untyped can be made from it; never zeroed).
    pub is_device: bool,
}

impl UntypedDesc {
    /// Size in bytes (saturating for nonsense sizes).
    pub const fn size_bytes(&self) -> u64 {
        if self.size_bits >= 64 { u64::MAX } else { 1u64 << self.size_bits }
    }
    /// One past the last byte, saturating.
    pub const fn end(&self) -> u64 {
        self.paddr.0.saturating_add(self.size_bytes())
    }
}

/// What is wrong with a bootinfo frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootInfoError {
    /// Fewer bytes than the structure needs.
    TooShort {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The untyped slot region holds more entries than the list can.
    TooManyUntyped(u64),
    /// A slot region whose end is before its start.
    BadRegion {
        /// Field name.
        field: &'static str,
    },
    /// An extra bootinfo chunk runs past the extra region or is shorter than its header.
    BadExtraChunk {
        /// Byte offset of the chunk inside the extra region.
        offset: usize,
    },
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::TooShort { have, need } => {
                write!(f, "bootinfo: {have} bytes, need at least {need}")
            }
            BootInfoError::TooManyUntyped(n) => {
                write!(f, "bootinfo: {n} untyped caps, the list holds {MAX_UNTYPED}")
            }
            BootInfoError::BadRegion { field } => write!(f, "bootinfo: slot region {field} ends before it starts"),
            BootInfoError::BadExtraChunk { offset } => {
                write!(f, "bootinfo: extra chunk at offset {offset} overruns the extra region")
            }
        }
    }
}

/// A parsed view of a bootinfo frame and its extra chunks.
#[derive(Clone, Copy)]
pub struct BootInfo<'a> {
    bytes: &'a [u8],
}

fn word(bytes: &[u8], index: usize) -> u64 {
    let mut w = [0u8; WORD];
    w.copy_from_slice(&bytes[index * WORD..index * WORD + WORD]);
    u64::from_le_bytes(w)
}

impl<'a> BootInfo<'a> {
    /// Checks and wraps the bootinfo bytes: the frame (4 KiB) followed by `extraLen` bytes of
    /// extra chunks. A slice holding only the structure (no extra region) is accepted when
    /// `extraLen` is 0.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, BootInfoError> {
        if bytes.len() < BOOTINFO_BYTES {
            return Err(BootInfoError::TooShort { have: bytes.len(), need: BOOTINFO_BYTES });
        }
        let bi = BootInfo { bytes };
        let extra_len = bi.extra_len();
        if extra_len > 0 {
            let need = BOOTINFO_FRAME_SIZE.saturating_add(extra_len);
            if bytes.len() < need {
                return Err(BootInfoError::TooShort { have: bytes.len(), need });
            }
        }
        for (field, w) in [
            ("empty", W_EMPTY),
            ("userImageFrames", W_USER_IMAGE_FRAMES),
            ("userImagePaging", W_USER_IMAGE_PAGING),
            ("extraBIPages", W_EXTRA_BI_PAGES),
            ("untyped", W_UNTYPED),
        ] {
            if word(bytes, w + 1) < word(bytes, w) {
                return Err(BootInfoError::BadRegion { field });
            }
        }
        let n = bi.untyped().len();
        if n > MAX_UNTYPED as u64 {
            return Err(BootInfoError::TooManyUntyped(n));
        }
        // Walk the chunks once so later iteration cannot fail.
        for chunk in bi.extra_chunks_checked() {
            chunk?;
        }
        Ok(bi)
    }

    /// Bytes of extra bootinfo after the frame.
    pub fn extra_len(&self) -> usize {
        usize::try_from(word(self.bytes, W_EXTRA_LEN)).unwrap_or(usize::MAX)
    }
    /// This node's id.
    pub fn node_id(&self) -> u64 {
        word(self.bytes, W_NODE_ID)
    }
    /// Number of nodes.
    pub fn num_nodes(&self) -> u64 {
        word(self.bytes, W_NUM_NODES)
    }
    /// User-level address of the initial thread's IPC buffer.
    pub fn ipc_buffer_addr(&self) -> u64 {
        word(self.bytes, W_IPC_BUFFER)
    }
    fn region(&self, w: usize) -> SlotRegion {
        SlotRegion { start: Slot::new(word(self.bytes, w)), end: Slot::new(word(self.bytes, w + 1)) }
    }
    /// Empty slots of the root CNode.
    pub fn empty(&self) -> SlotRegion {
        self.region(W_EMPTY)
    }
    /// Frame caps of the root task's own image.
    pub fn user_image_frames(&self) -> SlotRegion {
        self.region(W_USER_IMAGE_FRAMES)
    }
    /// Paging structure caps of the root task's own VSpace.
    pub fn user_image_paging(&self) -> SlotRegion {
        self.region(W_USER_IMAGE_PAGING)
    }
    /// Frame caps backing the extra bootinfo.
    pub fn extra_bi_pages(&self) -> SlotRegion {
        self.region(W_EXTRA_BI_PAGES)
    }
    /// log2 of the number of slots in the root CNode.
    pub fn cnode_size_bits(&self) -> u64 {
        word(self.bytes, W_CNODE_SIZE_BITS)
    }
    /// Slots holding the untyped caps, in the order of [`BootInfo::untyped_list`].
    pub fn untyped(&self) -> SlotRegion {
        self.region(W_UNTYPED)
    }

    /// The untyped list: entry `i` describes the cap in slot `untyped().start + i`.
    pub fn untyped_list(&self) -> impl ExactSizeIterator<Item = UntypedDesc> + 'a {
        let bytes = self.bytes;
        let n = self.untyped().len() as usize;
        (0..n).map(move |i| {
            let off = W_UNTYPED_LIST * WORD + i * UNTYPED_DESC_BYTES;
            let mut p = [0u8; 8];
            p.copy_from_slice(&bytes[off..off + 8]);
            UntypedDesc {
                paddr: PhysAddr(u64::from_le_bytes(p)),
                size_bits: bytes[off + 8] as u32,
                is_device: bytes[off + 9] != 0,
            }
        })
    }

    fn extra(&self) -> &'a [u8] {
        if self.extra_len() == 0 {
            return &[];
        }
        &self.bytes[BOOTINFO_FRAME_SIZE..BOOTINFO_FRAME_SIZE + self.extra_len()]
    }

    fn extra_chunks_checked(&self) -> impl Iterator<Item = Result<ExtraChunk<'a>, BootInfoError>> + 'a {
        let extra = self.extra();
        let mut offset = 0usize;
        core::iter::from_fn(move || {
            if offset >= extra.len() {
                return None;
            }
            let here = offset;
            if extra.len() - here < 2 * WORD {
                offset = extra.len();
                return Some(Err(BootInfoError::BadExtraChunk { offset: here }));
            }
            let id = word(&extra[here..], 0);
            let len = word(&extra[here..], 1);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len < 2 * WORD || len > extra.len() - here {
                offset = extra.len();
                return Some(Err(BootInfoError::BadExtraChunk { offset: here }));
            }
            offset = here + len;
            Some(Ok(ExtraChunk { id, content: &extra[here + 2 * WORD..here + len] }))
        })
    }

    /// The extra bootinfo chunks (padding included).
    pub fn extra_chunks(&self) -> impl Iterator<Item = ExtraChunk<'a>> + 'a {
        // from_bytes validated every chunk.
        self.extra_chunks_checked().filter_map(Result::ok)
    }

    /// The device tree the kernel passed on, if any.
    pub fn device_tree(&self) -> Option<&'a [u8]> {
        self.extra_chunks().find(|c| c.id == EXTRA_ID_FDT).map(|c| c.content)
    }
}

/// One chunk of extra bootinfo.
#[derive(Clone, Copy, Debug)]
pub struct ExtraChunk<'a> {
    /// Chunk id (`SEL4_BOOTINFO_HEADER_*`).
    pub id: u64,
    /// Content after the two-word header.
    pub content: &'a [u8],
}

/// Writes bootinfo bytes in the kernel's layout: used by the model and by tests to build a
/// bootinfo frame from a platform description.
#[derive(Clone, Debug, Default)]
pub struct BootInfoWriter {
    /// Empty slots.
    pub empty: SlotRegion,
    /// Root task image frames.
    pub user_image_frames: SlotRegion,
    /// Root task paging structures.
    pub user_image_paging: SlotRegion,
    /// log2 root CNode slots.
    pub cnode_size_bits: u64,
    /// IPC buffer address.
    pub ipc_buffer_addr: u64,
    /// First untyped slot; entries of `untyped` occupy consecutive slots from here.
    pub untyped_start: Slot,
    /// Extra chunks `(id, content)`, each written with its header.
    pub extra: [Option<(u64, &'static [u8])>; 2],
}

impl BootInfoWriter {
    /// Serialises into `out` (cleared first); `untyped` is the untyped list.
    #[cfg(feature = "alloc")]
    pub fn write(&self, untyped: &[UntypedDesc], out: &mut alloc::vec::Vec<u8>) {
        out.clear();
        out.resize(BOOTINFO_FRAME_SIZE, 0);
        let put = |out: &mut alloc::vec::Vec<u8>, w: usize, v: u64| {
            out[w * WORD..w * WORD + WORD].copy_from_slice(&v.to_le_bytes())
        };
        let mut extra = alloc::vec::Vec::new();
        for (id, content) in self.extra.iter().flatten() {
            extra.extend_from_slice(&id.to_le_bytes());
            extra.extend_from_slice(&((content.len() + 2 * WORD) as u64).to_le_bytes());
            extra.extend_from_slice(content);
        }
        put(out, W_EXTRA_LEN, extra.len() as u64);
        put(out, W_NODE_ID, 0);
        put(out, W_NUM_NODES, 1);
        put(out, W_IPC_BUFFER, self.ipc_buffer_addr);
        for (w, r) in [
            (W_EMPTY, self.empty),
            (W_USER_IMAGE_FRAMES, self.user_image_frames),
            (W_USER_IMAGE_PAGING, self.user_image_paging),
        ] {
            put(out, w, r.start.index());
            put(out, w + 1, r.end.index());
        }
        put(out, W_CNODE_SIZE_BITS, self.cnode_size_bits);
        put(out, W_UNTYPED, self.untyped_start.index());
        put(out, W_UNTYPED + 1, self.untyped_start.index() + untyped.len() as u64);
        for (i, u) in untyped.iter().enumerate().take(MAX_UNTYPED) {
            let off = W_UNTYPED_LIST * WORD + i * UNTYPED_DESC_BYTES;
            out[off..off + 8].copy_from_slice(&u.paddr.0.to_le_bytes());
            out[off + 8] = u.size_bits as u8;
            out[off + 9] = u.is_device as u8;
        }
        out.extend_from_slice(&extra);
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn sample() -> (BootInfoWriter, Vec<UntypedDesc>) {
        static DTB: [u8; 12] = [0xd0, 0x0d, 0xfe, 0xed, 1, 2, 3, 4, 5, 6, 7, 8];
        let w = BootInfoWriter {
            empty: SlotRegion { start: Slot::new(150), end: Slot::new(65536) },
            user_image_frames: SlotRegion { start: Slot::new(16), end: Slot::new(70) },
            user_image_paging: SlotRegion { start: Slot::new(70), end: Slot::new(76) },
            cnode_size_bits: 16,
            ipc_buffer_addr: 0x1000,
            untyped_start: Slot::new(76),
            extra: [Some((EXTRA_ID_PADDING, &[0; 8])), Some((EXTRA_ID_FDT, &DTB))],
        };
        let ut = alloc::vec![
            UntypedDesc { paddr: PhysAddr(0x0), size_bits: 27, is_device: true },
            UntypedDesc { paddr: PhysAddr(0x6000_0000), size_bits: 16, is_device: false },
        ];
        (w, ut)
    }

    #[test]
    fn written_bootinfo_parses_back() {
        let (w, ut) = sample();
        let mut bytes = Vec::new();
        w.write(&ut, &mut bytes);
        let bi = BootInfo::from_bytes(&bytes).unwrap();
        assert_eq!(bi.empty(), w.empty);
        assert_eq!(bi.cnode_size_bits(), 16);
        assert_eq!(bi.untyped().len(), 2);
        assert_eq!(bi.untyped_list().collect::<Vec<_>>(), ut);
        assert_eq!(bi.device_tree().unwrap()[..4], [0xd0, 0x0d, 0xfe, 0xed]);
        assert_eq!(bi.extra_chunks().count(), 2);
    }

    #[test]
    fn truncated_and_corrupt_bootinfo_is_refused() {
        let (w, ut) = sample();
        let mut bytes = Vec::new();
        w.write(&ut, &mut bytes);
        assert!(matches!(BootInfo::from_bytes(&bytes[..100]), Err(BootInfoError::TooShort { .. })));
        // Extra region shorter than extraLen claims.
        assert!(matches!(BootInfo::from_bytes(&bytes[..bytes.len() - 1]), Err(BootInfoError::TooShort { .. })));
        // A chunk whose length overruns the region.
        let mut bad = bytes.clone();
        let len_off = BOOTINFO_FRAME_SIZE + 8;
        bad[len_off..len_off + 8].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(BootInfo::from_bytes(&bad).err(), Some(BootInfoError::BadExtraChunk { offset: 0 }));
        // A region whose end precedes its start.
        let mut bad = bytes.clone();
        bad[W_EMPTY * 8..W_EMPTY * 8 + 8].copy_from_slice(&70000u64.to_le_bytes());
        assert_eq!(BootInfo::from_bytes(&bad).err(), Some(BootInfoError::BadRegion { field: "empty" }));
        // More untyped than the list holds.
        let mut bad = bytes.clone();
        let end = (76 + MAX_UNTYPED as u64 + 1).to_le_bytes();
        bad[(W_UNTYPED + 1) * 8..(W_UNTYPED + 2) * 8].copy_from_slice(&end);
        assert!(matches!(BootInfo::from_bytes(&bad), Err(BootInfoError::TooManyUntyped(_))));
    }
}
