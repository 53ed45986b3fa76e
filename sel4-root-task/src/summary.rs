//! What the root task reports about its bootinfo: counts and sizes of untyped memory, free
//! slots, the device tree. Pure, so it is tested on the host against bootinfo the tests
//! write.
//!
//! Owns: the arithmetic of the report. Never touches: the console (callers print).

use core::fmt;

use sel4::{BootInfo, UntypedDesc};

/// The numbers of a bootinfo summary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Summary {
    /// Untyped capabilities.
    pub untyped: u64,
    /// Of which RAM (not device).
    pub ram_untyped: u64,
    /// Bytes of RAM untyped.
    pub ram_bytes: u64,
    /// Bytes of device untyped.
    pub device_bytes: u64,
    /// The largest RAM untyped.
    pub largest_ram: Option<UntypedDesc>,
    /// Empty slots in the root CNode.
    pub free_slots: u64,
    /// Bytes of the device tree, if the kernel passed one.
    pub dtb_bytes: Option<usize>,
}

impl Summary {
    /// Computes the summary of `bi`.
    pub fn of(bi: &BootInfo<'_>) -> Self {
        let mut s = Summary {
            untyped: 0,
            ram_untyped: 0,
            ram_bytes: 0,
            device_bytes: 0,
            largest_ram: None,
            free_slots: bi.empty().len(),
            dtb_bytes: bi.device_tree().map(<[u8]>::len),
        };
        for u in bi.untyped_list() {
            s.untyped += 1;
            if u.is_device {
                s.device_bytes = s.device_bytes.saturating_add(u.size_bytes());
            } else {
                s.ram_untyped += 1;
                s.ram_bytes = s.ram_bytes.saturating_add(u.size_bytes());
                if s.largest_ram.is_none_or(|l| u.size_bits > l.size_bits) {
                    s.largest_ram = Some(u);
                }
            }
        }
        s
    }
}

impl fmt::Display for Summary {
    /// The report lines (without a trailing newline), each starting with `bootinfo:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bootinfo: untyped={} ram_untyped={} device_untyped={}",
            self.untyped,
            self.ram_untyped,
            self.untyped - self.ram_untyped
        )?;
        writeln!(
            f,
            "bootinfo: ram_bytes={} ({} MiB) device_bytes={:#x}",
            self.ram_bytes,
            self.ram_bytes >> 20,
            self.device_bytes
        )?;
        match self.largest_ram {
            Some(u) => writeln!(f, "bootinfo: largest_ram_untyped paddr={} size_bits={}", u.paddr, u.size_bits)?,
            None => writeln!(f, "bootinfo: largest_ram_untyped none")?,
        }
        writeln!(f, "bootinfo: free_slots={}", self.free_slots)?;
        match self.dtb_bytes {
            Some(n) => write!(f, "bootinfo: dtb=present bytes={n}"),
            None => write!(f, "bootinfo: dtb=absent"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use sel4::bootinfo::{BootInfoWriter, EXTRA_ID_FDT};
    use sel4::{PhysAddr, Slot, SlotRegion};

    fn write(untyped: &[UntypedDesc], dtb: Option<&'static [u8]>) -> Vec<u8> {
        let w = BootInfoWriter {
            empty: SlotRegion { start: Slot::new(150), end: Slot::new(65536) },
            cnode_size_bits: 16,
            untyped_start: Slot::new(76),
            extra: [dtb.map(|d| (EXTRA_ID_FDT, d)), None],
            ..Default::default()
        };
        let mut bytes = Vec::new();
        w.write(untyped, &mut bytes);
        bytes
    }

    #[test]
    fn counts_sizes_and_largest() {
        static DTB: [u8; 8] = [0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 8];
        let ut = [
            UntypedDesc { paddr: PhysAddr(0), size_bits: 27, is_device: true },
            UntypedDesc { paddr: PhysAddr(0x6000_0000), size_bits: 16, is_device: false },
            UntypedDesc { paddr: PhysAddr(0x8000_0000), size_bits: 29, is_device: false },
            UntypedDesc { paddr: PhysAddr(0xa000_0000), size_bits: 28, is_device: false },
        ];
        let bytes = write(&ut, Some(&DTB));
        let s = Summary::of(&BootInfo::from_bytes(&bytes).unwrap());
        assert_eq!(s.untyped, 4);
        assert_eq!(s.ram_untyped, 3);
        assert_eq!(s.ram_bytes, (1 << 16) + (1 << 29) + (1 << 28));
        assert_eq!(s.device_bytes, 1 << 27);
        assert_eq!(s.largest_ram, Some(ut[2]));
        assert_eq!(s.free_slots, 65536 - 150);
        assert_eq!(s.dtb_bytes, Some(8));
        let text = s.to_string();
        assert!(text.contains("bootinfo: untyped=4 ram_untyped=3 device_untyped=1"), "{text}");
        assert!(text.contains("largest_ram_untyped paddr=0x80000000 size_bits=29"), "{text}");
        assert!(text.ends_with("bootinfo: dtb=present bytes=8"), "{text}");
    }

    #[test]
    fn no_ram_and_no_dtb() {
        let ut = [UntypedDesc { paddr: PhysAddr(0), size_bits: 27, is_device: true }];
        let bytes = write(&ut, None);
        let s = Summary::of(&BootInfo::from_bytes(&bytes).unwrap());
        assert_eq!((s.ram_untyped, s.ram_bytes, s.largest_ram, s.dtb_bytes), (0, 0, None, None));
        assert!(s.to_string().contains("largest_ram_untyped none"));
    }
}
