//! Target `linux_image`: the arm64 `Image` header and the boot-protocol placement check
//! (`vm_runner::linux`), as `capvisor dtb` and `capvisor vms` run them on a kernel file and
//! a VM file: [`ImageHeader::parse`], then [`LinuxBoot::check`] and [`LinuxBoot::start`].
//!
//! Input: the header's 64 bytes, then (see [`Placement`]) the file's length and the VM's
//! placement: its RAM regions, load address, entry point, device tree and initrd. The
//! configuration is built directly and not checked first, so the check meets
//! placements no VM file would pass.
//!
//! Invariants: an accepted placement has the kernel at the load address for its
//! `image_size`, the device tree 8-byte aligned and no two parts overlapping.

use linux::{ImageHeader, LinuxBoot};
use vm_config::{GuestPhysAddr, GuestRange, Image, VmConfig};
use vm_runner::linux;

use crate::input::{Reader, Writer};

/// Where a VM puts a Linux kernel and what it loads with it: the part of the input after
/// the header.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Bytes of the kernel file.
    pub file_len: u64,
    /// RAM regions (base, size); at most three are read.
    pub ram: Vec<(u64, u64)>,
    /// `kernel_load_addr`.
    pub load: u64,
    /// `entry_point`, if not the load address.
    pub entry: Option<u64>,
    /// `dtb_load_addr`.
    pub dtb: Option<u64>,
    /// `ramdisk_load_addr`.
    pub ramdisk: Option<u64>,
    /// The initrd file's length.
    pub initrd_len: Option<u64>,
    /// The device tree's length.
    pub dtb_len: u64,
}

impl Placement {
    fn read(r: &mut Reader<'_>) -> Self {
        let file_len = r.u64();
        let n = r.u8() % 4;
        let ram = (0..n).map(|_| (r.u64(), r.u64())).collect();
        let load = r.u64();
        let flags = r.u8();
        let opt = |r: &mut Reader<'_>, bit: u8| (flags & (1 << bit) != 0).then(|| r.u64());
        Placement {
            file_len,
            ram,
            load,
            entry: opt(r, 0),
            dtb: opt(r, 1),
            ramdisk: opt(r, 2),
            initrd_len: opt(r, 3),
            dtb_len: r.u64(),
        }
    }

    /// The input bytes after the header.
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.file_len).u8(self.ram.len() as u8);
        for &(b, s) in &self.ram {
            w.u64(b).u64(s);
        }
        w.u64(self.load);
        let flags = [self.entry, self.dtb, self.ramdisk, self.initrd_len]
            .iter()
            .enumerate()
            .fold(0u8, |f, (i, o)| f | (u8::from(o.is_some()) << i));
        w.u8(flags);
        for v in [self.entry, self.dtb, self.ramdisk, self.initrd_len].into_iter().flatten() {
            w.u64(v);
        }
        w.u64(self.dtb_len);
    }

    fn config(&self) -> VmConfig {
        let entry = self.entry.unwrap_or(self.load);
        let mut c = VmConfig::minimal(1, "linux", GuestRange::new(0, 0), entry);
        let region = c.memory[0];
        c.memory =
            self.ram.iter().map(|&(b, s)| vm_config::MemRegion { range: GuestRange::new(b, s), ..region }).collect();
        c.kernel.load_addr = GuestPhysAddr(self.load);
        c.dtb = self.dtb.map(|a| Image { path: String::new(), load_addr: GuestPhysAddr(a) });
        c.ramdisk = self.ramdisk.map(|a| Image { path: "initrd".into(), load_addr: GuestPhysAddr(a) });
        c
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let header_bytes = r.take(linux::HEADER_SIZE);
    let placement = Placement::read(&mut r);
    let header = match ImageHeader::parse(header_bytes, placement.file_len) {
        Ok(h) => h,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let config = placement.config();
    let boot = match LinuxBoot::check(&config, &header, placement.initrd_len, placement.dtb_len) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(boot.kernel, GuestRange::new(config.kernel.load_addr.0, header.image_size_bytes));
    assert_eq!(boot.dtb.base.0 % linux::DTB_ALIGN, 0, "{boot:?}");
    let parts = [Some(boot.kernel), Some(boot.dtb), boot.initrd];
    for (i, a) in parts.iter().enumerate() {
        for b in &parts[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                assert!(!a.overlaps(b), "accepted overlapping parts: {boot:?}");
            }
        }
    }
    let start = boot.start();
    assert_eq!((start.entry, start.context), (boot.kernel.base.0, boot.dtb.base.0));
}
