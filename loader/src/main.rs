//! capvisor's boot loader.
//!
//! Entered at EL2 with the MMU off (QEMU `-kernel`, U-Boot `go`, or the Raspberry Pi firmware,
//! which loads the flat binary at 0x80000: loaded away from its link address, the loader first
//! moves itself and its payload there), it reads the payload
//! that `capvisor image` appended to it (format and placement: the `boot-image` crate),
//! checks every segment of the seL4 kernel and the root task at the physical address the
//! tool chose (the ELF image gives each segment its own `PT_LOAD`, which QEMU places
//! there; the flat binary carries them in the payload and the loader copies them), places
//! the device tree below the root task, builds the page tables seL4 expects at entry
//! (identity map for the loader, the kernel's window at `paddr + offset`), turns the MMU
//! on, starts the other cores the kernel was built for (PSCI `CPU_ON`; each sets up EL2 the
//! same way), and jumps to the kernel's virtual entry with seL4's boot arguments in x0..x5,
//! on every core.
//!
//! Owns: the EL2 machine state until the jump. Never touches: anything after it; the
//! payload's contents beyond what the format defines.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod start;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the loader runs on the target: cargo build -p loader --target aarch64-unknown-none");
}
