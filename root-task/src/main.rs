//! capvisor root task.
//!
//! Today: reports the bootinfo (summary and the untyped list), runs the self-tests of this
//! build, prints `capvisor: ALL OK` or `capvisor: FAILED n`, and ends QEMU through
//! semihosting with status 0 or 1.
#![cfg_attr(target_os = "none", no_std, no_main)]

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
    use sel4::BootInfo;
    use sel4_root_task::summary::Summary;
    use sel4_root_task::{debug_println, semihosting};

    use crate::selftest::TESTS;

    sel4_root_task::main!(main);

    fn main(bi: &BootInfo<'static>) -> ! {
        debug_println!("capvisor root task: started");
        debug_println!("{}", Summary::of(bi));
        debug_println!("bootinfo: empty slots {}..{}", bi.empty().start.index(), bi.empty().end.index());
        debug_println!("bootinfo: untyped slots {}..{}", bi.untyped().start.index(), bi.untyped().end.index());
        // The full untyped list is for tests and platform recording; a run with VMs skips it
        // (73 lines cost about 0.45 s of an emulated boot through seL4_DebugPutChar).
        if !crate::vmm::configured() {
            for (i, u) in bi.untyped_list().enumerate() {
                debug_println!("UT {i} paddr={} size_bits={} device={}", u.paddr, u.size_bits, u.is_device);
            }
        }
        let mut failed = 0u32;
        for t in TESTS {
            match (t.run)(bi) {
                Ok(()) => debug_println!("selftest {}: ok", t.name),
                Err(e) => {
                    failed += 1;
                    debug_println!("selftest {}: FAILED: {e}", t.name);
                }
            }
        }
        if failed == 0 && crate::vmm::configured() {
            debug_println!("capvisor: self-tests OK ({}); running the VMs", TESTS.len());
            semihosting::exit(crate::vmm::run(bi))
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
