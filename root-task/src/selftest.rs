//! The self-tests compiled into this build, selected by cargo features (`selftest-*`).
//! Each takes what the runtime handed `main` (the bootinfo, and what the runtime kept of it)
//! and returns what failed; `main` runs them in order and reports.
//!
//! Owns: the registry. Never touches: capabilities the tests do not create.

use core::fmt;

use sel4_root_task::Start;

/// Why a self-test failed.
pub struct Failure {
    /// What was expected and found.
    pub message: Message,
}

/// A failure message: static text plus up to two numbers.
pub struct Message {
    /// What was wrong.
    pub what: &'static str,
    /// A value (address, count).
    pub a: u64,
    /// Another value.
    pub b: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x}, {:#x})", self.message.what, self.message.a, self.message.b)
    }
}

fn fail(what: &'static str, a: u64, b: u64) -> Result<(), Failure> {
    Err(Failure { message: Message { what, a, b } })
}

/// One self-test.
pub struct SelfTest {
    /// Name printed in the report.
    pub name: &'static str,
    /// The test.
    pub run: fn(&Start) -> Result<(), Failure>,
}

/// The tests of this build.
pub const TESTS: &[SelfTest] = &[
    #[cfg(feature = "selftest-bootinfo")]
    SelfTest { name: "bootinfo", run: bootinfo::run },
    #[cfg(feature = "selftest-panic")]
    SelfTest { name: "panic", run: panic::run },
    #[cfg(feature = "selftest-timer")]
    SelfTest { name: "timer", run: crate::timer::selftest::run },
    #[cfg(feature = "bench-timer")]
    SelfTest { name: "timer-bench", run: crate::timer::selftest::bench },
    #[cfg(feature = "selftest-hal")]
    SelfTest { name: "hal", run: crate::halcheck::run },
    #[cfg(feature = "bench-hal")]
    SelfTest { name: "hal-bench", run: crate::halcheck::bench },
];

#[cfg(feature = "selftest-panic")]
mod panic {
    //! Panics on purpose, to show the runtime's panic path: message and location printed,
    //! the thread suspended, nothing after it runs.

    use sel4_root_task::Start;

    use super::Failure;

    pub fn run(start: &Start) -> Result<(), Failure> {
        panic!("selftest-panic: deliberate panic with {} untyped", start.bootinfo.untyped_list().len())
    }
}

#[cfg(feature = "selftest-bootinfo")]
mod bootinfo {
    //! The bootinfo the kernel handed over is self-consistent and agrees with the device
    //! tree: untyped 16-byte aligned and disjoint, RAM untyped inside the DTB's memory, free slots
    //! up to the end of the root CNode, the IPC buffer page aligned; and what the runtime kept
    //! for the console is the first empty slots and one device untyped.

    use boot_image::fdt::Fdt;
    use sel4_root_task::Start;

    use super::{Failure, fail};

    pub fn run(start: &Start) -> Result<(), Failure> {
        let bi = start.bootinfo;
        let n = bi.untyped_list().len();
        if n == 0 {
            return fail("no untyped capabilities", 0, 0);
        }
        if bi.untyped_list().all(|u| u.is_device) {
            return fail("no RAM untyped", n as u64, 0);
        }
        for u in bi.untyped_list() {
            if !(4..=47).contains(&u.size_bits) {
                return fail("untyped size_bits out of range", u.paddr.0, u.size_bits as u64);
            }
            // seL4 aligns untyped to seL4_MinUntypedBits, not to their size (device untyped
            // such as 0x8000000000 with size_bits 40 exist).
            if !u.paddr.is_aligned(4) {
                return fail("untyped not aligned to 16 bytes", u.paddr.0, u.size_bits as u64);
            }
        }
        for (i, a) in bi.untyped_list().enumerate() {
            for b in bi.untyped_list().skip(i + 1) {
                if a.paddr.0 < b.end() && b.paddr.0 < a.end() {
                    return fail("untyped overlap", a.paddr.0, b.paddr.0);
                }
            }
        }
        let end = 1u64 << bi.cnode_size_bits();
        if bi.empty().is_empty() || bi.empty().end.index() != end {
            return fail("empty slots do not run to the end of the root CNode", bi.empty().end.index(), end);
        }
        if !bi.ipc_buffer_addr().is_multiple_of(4096) {
            return fail("IPC buffer not page aligned", bi.ipc_buffer_addr(), 0);
        }
        // What the runtime kept for the console: the first empty slots and a device untyped,
        // and the root task's share starts right after those slots.
        let r = start.reserved;
        if r.slots.is_empty() || r.slots.start != bi.empty().start || start.empty().start != r.slots.end {
            return fail(
                "the runtime's slots are not the first empty slots",
                r.slots.start.index(),
                r.slots.end.index(),
            );
        }
        let console_ut = r.untyped.and_then(|s| s.index().checked_sub(bi.untyped().start.index()));
        match console_ut.and_then(|i| bi.untyped_list().nth(i as usize)) {
            Some(u) if u.is_device && start.untyped().count() + 1 == n => {}
            _ => return fail("the console's untyped is not one device untyped kept from the root task", 0, 0),
        }
        let Some(dtb) = bi.device_tree() else {
            return fail("no device tree in the extra bootinfo", 0, 0);
        };
        let fdt = match Fdt::from_bytes(dtb) {
            Ok(f) => f,
            Err(_) => return fail("device tree does not parse", dtb.len() as u64, 0),
        };
        let Ok(Some(_)) = fdt.first_memory() else {
            return fail("device tree has no memory node", 0, 0);
        };
        for u in bi.untyped_list().filter(|u| !u.is_device) {
            if !matches!(fdt.memory_holding(u.paddr.0, u.end()), Ok(Some(_))) {
                return fail("RAM untyped outside the device tree's memory", u.paddr.0, u.size_bits as u64);
            }
        }
        Ok(())
    }
}
