//! Ending the system under QEMU with a status (AArch64 semihosting `SYS_EXIT_EXTENDED`), and
//! QEMU's own console for the last words of a run that has no console of its own
//! (`SYS_WRITE0`).
//!
//! Works from EL0 only when QEMU runs with `-semihosting-config enable=on,userspace=on`
//! (the `qemu/run-qemu.sh` script passes it). Without it, `hlt #0xf000` is an undefined
//! instruction: the kernel reports a user exception, the root task has no fault handler, and
//! the kernel stops the thread; so callers print their result line first.

/// `SYS_WRITE0`: write a NUL-terminated string to the debug console.
const SYS_WRITE0: u64 = 0x04;
/// `SYS_EXIT_EXTENDED`: exit with a status code (QEMU supports it on AArch64).
const SYS_EXIT_EXTENDED: u64 = 0x20;
/// `ADP_Stopped_ApplicationExit`.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Asks the host (QEMU) to exit with `status`.
pub fn exit(status: u32) -> ! {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, status as u64];
    // SAFETY: the semihosting call only reads the two-word parameter block, which lives on
    // this stack for the duration of the call; it does not return when semihosting is on.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            in("x0") SYS_EXIT_EXTENDED,
            in("x1") block.as_ptr(),
            options(nostack, readonly),
        )
    };
    crate::debug_println!(
        "capvisor: semihosting exit({status}) returned: QEMU lacks -semihosting-config enable=on,userspace=on"
    );
    crate::rt::suspend_self()
}

/// Writes `text` up to its first NUL byte to the host's console (QEMU: its standard error
/// unless `-semihosting-config chardev=` says otherwise). `text` must contain a NUL.
pub fn write0(text: &[u8]) {
    if !text.contains(&0) {
        return;
    }
    // SAFETY: the call reads the bytes up to the first NUL, which lies inside `text` (checked
    // above); `text` is borrowed for the duration of the call. x0 comes back with a result.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_WRITE0 => _,
            in("x1") text.as_ptr(),
            options(nostack, readonly),
        )
    };
}
