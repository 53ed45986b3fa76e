//! `hal-check` on the real kernel: the HAL's scenarios and seeded random sequence
//! (feature `selftest-hal`) and its allocation benchmark (feature `bench-hal`).
//!
//! Both print what the host needs to repeat the run on the seL4 model: the platform this boot
//! describes (untyped list, slot ranges, image placement) after `HALPLAT `, in the format
//! `sel4_model::Model::from_platform` reads, and what of it the HAL is given after
//! `HALSHARE ` (`hal_check::diff::HalShare`: the runtime keeps the console's untyped and
//! first slots, `sel4_root_task::Reserved`). The self-test then prints one line per HAL
//! operation after `HALTRACE `, which `capvisor/tests/hal_kernel.rs` compares with the same
//! sequence run on the model given the same share; the benchmark prints rows after
//! `HALBENCH `.
//!
//! Owns, while a test runs: the IPC buffer (lent to the HAL as `&mut RealKernel`, given back
//! at the end), every untyped and every empty slot the runtime left to the root task (the
//! HAL's; the benchmark keeps one untyped and the last slots for its reference measurement).
//! Never touches: the root task's own capabilities (slots below bootinfo's empty region) or
//! what the runtime reserved.

use core::arch::asm;

use hal_check::counting;
use hal_check::diff::{HalShare, PLATFORM_PREFIX, SHARE_PREFIX, platform_lines};
use hal_sel4::{HalConfig, Sel4Hal};
use sel4::{BootInfo, Kernel, RealKernel};
use sel4_root_task::{Start, debug_println};

use crate::selftest::{Failure, Message};

fn fail(what: &'static str, a: u64, b: u64) -> Result<(), Failure> {
    Err(Failure { message: Message { what, a, b } })
}

/// The system counter through `CNTVCT_EL0`: EL0 may read it (seL4's `EXPORT_VCNT_USER`),
/// while an EL0 `CNTPCT_EL0` read traps under QEMU before 8.2 (see `src/timer.rs`). No VCPU
/// runs in these builds, so its offset from the physical count stays what it was at boot and
/// differences are exact.
#[inline(always)]
fn ticks() -> u64 {
    let v: u64;
    // SAFETY: reading CNTVCT_EL0 at EL0 is allowed (above) and has no side effects; the ISB
    // keeps the read from being taken before the instructions it is meant to follow.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The counter's frequency (`CNTFRQ_EL0`, readable wherever a counter is).
fn ticks_per_second() -> u64 {
    let v: u64;
    // SAFETY: as for `ticks`: an EL0-readable register, no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Prints this boot's platform description after [`PLATFORM_PREFIX`].
fn print_platform(k: &mut RealKernel, bi: &BootInfo<'static>) {
    let image = k.page_get_address(bi.user_image_frames().start.cap()).ok();
    let ipc_buffer = k.page_get_address(sel4::init_cap::IPC_BUFFER.cap()).ok();
    for l in platform_lines(bi, image, ipc_buffer) {
        debug_println!("{PLATFORM_PREFIX}{l}");
    }
}

/// What the runtime left to the root task, as the HAL's share.
fn share(start: &Start) -> HalShare {
    HalShare { slots: start.empty(), withheld_untyped: start.reserved.untyped.into_iter().collect() }
}

/// The self-test: scenarios, the random sequence of `Config::SELFTEST`, a full check; all of
/// it traced.
#[cfg(feature = "selftest-hal")]
pub fn run(start: &Start) -> Result<(), Failure> {
    use hal_check::diff::TRACE_PREFIX;
    use hal_check::{Config, Driver, run_all};

    let bi = start.bootinfo;
    let Some(mut k) = RealKernel::from_registered_ipc_buffer() else {
        return fail("hal-check: the IPC buffer is lent out", 0, 0);
    };
    print_platform(&mut k, bi);
    let share = share(start);
    debug_println!("{SHARE_PREFIX}{}", share.line());
    let region = share.slots;
    let (failures, ops, ticks_used) = {
        let hal = match Sel4Hal::new(counting(&mut k), share.untyped(bi), HalConfig::new(region)) {
            Ok(h) => h,
            Err(e) => {
                debug_println!("hal-check: HAL setup: {e}");
                sel4::sys::set_ipc_buffer(k.into_ipc_buffer());
                return fail("hal-check: HAL setup refused the bootinfo", 0, 0);
            }
        };
        let mut sink = |l: &str| debug_println!("{TRACE_PREFIX}{l}");
        let mut d = Driver::new(hal, region, &mut sink);
        let t0 = ticks();
        let out = run_all(&mut d, &Config::SELFTEST);
        let used = ticks() - t0;
        if let Some((name, f)) = out.first_failure() {
            debug_println!("hal-check: first failure in {name}: {f}");
        }
        (out.failures() as u64, d.operations(), used)
    };
    sel4::sys::set_ipc_buffer(k.into_ipc_buffer());
    let ms = ticks_used * 1000 / ticks_per_second().max(1);
    debug_println!("hal-check: {ops} operations in {ms} ms, {failures} failures");
    if failures == 0 { Ok(()) } else { fail("hal-check: failures (see the lines above)", failures, 0) }
}

/// The benchmark: every untyped of the root task's but the reference one and every empty slot
/// of the root task's but the last 256 go to the HAL; rows and skipped cases are printed
/// after [`BENCH_PREFIX`].
#[cfg(feature = "bench-hal")]
pub fn bench(start: &Start) -> Result<(), Failure> {
    use hal_check::bench;
    use hal_check::diff::BENCH_PREFIX;
    use sel4::{Slot, SlotRegion};

    let Some(mut k) = RealKernel::from_registered_ipc_buffer() else {
        return fail("hal-bench: the IPC buffer is lent out", 0, 0);
    };
    let bi = start.bootinfo;
    print_platform(&mut k, bi);
    let share = share(start);
    debug_println!("{SHARE_PREFIX}{}", share.line());
    let (slots, descs): (alloc::vec::Vec<Slot>, alloc::vec::Vec<_>) = start.untyped().unzip();
    let reference = bench::reference_index(&descs);
    let untyped = descs.iter().enumerate().filter(|(i, _)| Some(*i) != reference).map(|(i, d)| (slots[i].cap(), *d));
    // The reference's frames go in the last slots of the CNode, outside the HAL's region.
    let empty = share.slots;
    let split = Slot::new(empty.end.index() - sel4::config::RETYPE_FAN_OUT_LIMIT);
    let region = SlotRegion { start: empty.start, end: split };
    let scratch = SlotRegion { start: split, end: empty.end };
    let result = match Sel4Hal::new(counting(&mut k), untyped, HalConfig::new(region)) {
        Ok(mut hal) => {
            let hz = ticks_per_second();
            let mut clock = ticks;
            let r = reference.map(|i| (slots[i].cap(), descs[i]));
            debug_println!("{BENCH_PREFIX}counter_hz={hz}");
            bench::run(&mut hal, r, scratch, &mut clock, hz)
        }
        Err(e) => {
            debug_println!("hal-bench: HAL setup: {e}");
            Err(hal_check::Failure::new(alloc::string::String::from("HAL setup")))
        }
    };
    sel4::sys::set_ipc_buffer(k.into_ipc_buffer());
    match result {
        Ok(report) => {
            for row in &report.rows {
                debug_println!("{BENCH_PREFIX}{row}");
            }
            for (name, why) in &report.skipped {
                debug_println!("{BENCH_PREFIX}skipped {name}: {why}");
            }
            Ok(())
        }
        Err(f) => {
            debug_println!("hal-bench: {f}");
            fail("hal-bench failed (see the line above)", 0, 0)
        }
    }
}
