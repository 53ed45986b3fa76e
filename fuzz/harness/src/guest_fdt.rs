//! Target `guest_fdt`: the guest device-tree generator, [`vm_runner::fdt::generate`], on
//! every configuration the root task would accept.
//!
//! Input: the initrd's length (`u64`, little-endian), then a compact system encoding
//! ([`vm_config::encode_system`]); the system must decode and pass every check
//! ([`vm_config::load_system`], as the root task decodes its embedded configuration). The
//! seeds are the VM files of `configs/`, encoded.
//!
//! Invariants: a generated tree reads back with the loader's and root task's reader
//! ([`boot_image::fdt::Fdt`]), and names the VM's first PL011 where the VM has one.

use boot_image::fdt::Fdt;
use vm_config::{EmulatedKind, GuestRange};

use crate::input::Reader;

/// One input.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let initrd_len = r.u64();
    let Ok(sys) = vm_config::load_system(r.rest()) else { return };
    for vm in &sys.vms {
        let initrd = vm.ramdisk.as_ref().map(|rd| GuestRange::new(rd.load_addr.0, initrd_len));
        let blob = match vm_runner::fdt::generate(vm, initrd) {
            Ok(b) => b,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        let fdt = match Fdt::from_bytes(&blob) {
            Ok(f) => f,
            Err(e) => panic!("VM {:?}: the generated device tree does not read back: {e}", vm.name),
        };
        if let Err(e) = fdt.used_size().and(fdt.first_memory()) {
            panic!("VM {:?}: the generated device tree does not read back: {e}", vm.name);
        }
        let uart = match fdt.compatible_reg("arm,pl011") {
            Ok(u) => u,
            Err(e) => panic!("VM {:?}: the generated device tree does not read back: {e}", vm.name),
        };
        let first = vm.emulated.iter().find(|d| d.kind == EmulatedKind::Console);
        assert_eq!(
            uart.map(|u| (u.base, u.size)),
            first.map(|d| (d.range.base.0, d.range.size_bytes)),
            "VM {:?}: the tree's PL011 is not the VM's first console",
            vm.name
        );
    }
}
