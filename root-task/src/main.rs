//! capvisor root task.
//!
//! Today: reports the bootinfo (summary and the untyped list), runs the self-tests of this
//! build, prints `capvisor: ALL OK` or `capvisor: FAILED n`, and ends QEMU through
//! semihosting with status 0 or 1; or, built with a VM bundle, runs the VMs (`vmm`).
//!
//! The console is the runtime's PL011 driver (`sel4_root_task`), on debug and release kernels
//! alike; this crate tells it where the UART is by asking the device tree the kernel passed
//! on (`console_uart` below).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(all(target_os = "none", feature = "bench-exits"))]
mod bare_fault;
#[cfg(all(target_os = "none", any(feature = "selftest-hal", feature = "bench-hal")))]
mod halcheck;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(all(target_os = "none", any(feature = "selftest-timer", feature = "bench-timer", feature = "vmm-timer")))]
mod timer;
#[cfg(target_os = "none")]
mod vmm;

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod target {
    use boot_image::fdt::Fdt;
    use sel4::{BootInfo, PhysAddr};
    use sel4_root_task::summary::Summary;
    use sel4_root_task::{Start, debug_println, semihosting};

    use crate::selftest::TESTS;

    sel4_root_task::main!(main, console = console_uart);

    /// The platform's console UART: the first PL011 in the device tree the kernel passed on
    /// (the one the loader and, on a debug build, the kernel write to).
    pub fn console_uart(bi: &BootInfo<'_>) -> Result<PhysAddr, &'static str> {
        let dtb = bi.device_tree().ok_or("no device tree in the bootinfo")?;
        let fdt = Fdt::from_bytes(dtb).map_err(|_| "the device tree does not parse")?;
        match fdt.compatible_reg("arm,pl011") {
            Ok(Some(reg)) => Ok(PhysAddr(reg.base)),
            Ok(None) => Err("no arm,pl011 node in the device tree"),
            Err(_) => Err("the device tree does not parse"),
        }
    }

    fn main(start: &Start) -> ! {
        let bi = start.bootinfo;
        debug_println!("capvisor root task: started");
        let r = &start.reserved;
        debug_println!(
            "capvisor root task: console: PL011 registers at {:#x}; the runtime keeps untyped slot {}, slots {}..{}",
            start.console.address(),
            r.untyped.map_or(0, |s| s.index()),
            r.slots.start.index(),
            r.slots.end.index()
        );
        debug_println!("{}", Summary::of(bi));
        debug_println!("bootinfo: empty slots {}..{}", bi.empty().start.index(), bi.empty().end.index());
        debug_println!("bootinfo: untyped slots {}..{}", bi.untyped().start.index(), bi.untyped().end.index());
        // The full untyped list is for tests and platform recording; a run with VMs skips it
        // (73 lines cost a visible part of an emulated boot).
        if !crate::vmm::configured() {
            for (i, u) in bi.untyped_list().enumerate() {
                debug_println!("UT {i} paddr={} size_bits={} device={}", u.paddr, u.size_bits, u.is_device);
            }
        }
        let mut failed = 0u32;
        for t in TESTS {
            match (t.run)(start) {
                Ok(()) => debug_println!("selftest {}: ok", t.name),
                Err(e) => {
                    failed += 1;
                    debug_println!("selftest {}: FAILED: {e}", t.name);
                }
            }
        }
        if failed == 0 && crate::vmm::configured() {
            debug_println!("capvisor: self-tests OK ({}); running the VMs", TESTS.len());
            // The exit benchmark's reference, in the same boot, before the VMs exist.
            #[cfg(feature = "bench-exits")]
            crate::bare_fault::report(start);
            semihosting::exit(crate::vmm::run(start))
        }
        if failed == 0 {
            debug_println!("capvisor: ALL OK ({} self-tests)", TESTS.len());
            semihosting::exit(0)
        } else {
            debug_println!("capvisor: FAILED {failed}");
            semihosting::exit(1)
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the root task runs on seL4: cargo build -p root-task --target aarch64-unknown-none");
}
