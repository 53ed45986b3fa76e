//! The AArch64 system call instruction sequences, one per register pattern, as in libsel4's
//! `sel4_arch/syscalls.h`: x7 carries the system call number, x0 the capability (in) and
//! badge (out), x1 the message info, x2..x5 message registers 0..3; `svc #0` traps.
//!
//! Registers the kernel may change are declared as outputs exactly where libsel4 declares
//! them; the kernel restores every other register from the saved context. None of these
//! sequences is `nomem`: the kernel reads and writes the calling thread's IPC buffer.

/// `arm_sys_send`: a one-way send with data (Send, NBSend). The kernel may change x0..x5.
#[inline(always)]
pub(super) fn send(sys: i64, dest: u64, info: u64, mrs: [u64; 4]) {
    // SAFETY: `svc #0` enters the kernel, which validates every argument; it touches no
    // memory of ours but the IPC buffer registered for this thread, which callers hold
    // `&mut` (see `super`). Every register it may change is declared as an output.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x7") sys,
            inout("x0") dest => _,
            inout("x1") info => _,
            inout("x2") mrs[0] => _,
            inout("x3") mrs[1] => _,
            inout("x4") mrs[2] => _,
            inout("x5") mrs[3] => _,
            options(nostack),
        );
    }
}

/// `arm_sys_reply`: non-MCS Reply (no destination register). The kernel may change x1..x5.
#[inline(always)]
pub(super) fn reply(sys: i64, info: u64, mrs: [u64; 4]) {
    // SAFETY: as for `send`; x0 is neither read nor changed by the kernel for Reply.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x7") sys,
            inout("x1") info => _,
            inout("x2") mrs[0] => _,
            inout("x3") mrs[1] => _,
            inout("x4") mrs[2] => _,
            inout("x5") mrs[3] => _,
            options(nostack),
        );
    }
}

/// `arm_sys_send_null`: a one-way send without message registers (Signal).
#[inline(always)]
pub(super) fn send_null(sys: i64, dest: u64, info: u64) {
    // SAFETY: as for `send`; the kernel may change only x0 and x1 here.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x7") sys,
            inout("x0") dest => _,
            inout("x1") info => _,
            options(nostack),
        );
    }
}

/// `arm_sys_recv`: a receive (Recv, NBRecv). Returns `(badge, info, mrs 0..3)`.
#[inline(always)]
pub(super) fn recv(sys: i64, src: u64) -> (u64, u64, [u64; 4]) {
    let badge: u64;
    let info: u64;
    let (m0, m1, m2, m3): (u64, u64, u64, u64);
    // SAFETY: as for `send`; the kernel writes message registers 4.. of a long message
    // into the IPC buffer, which the callers in `super` hold `&mut`.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x7") sys,
            inout("x0") src => badge,
            out("x1") info,
            out("x2") m0,
            out("x3") m1,
            out("x4") m2,
            out("x5") m3,
            options(nostack),
        );
    }
    (badge, info, [m0, m1, m2, m3])
}

/// `arm_sys_send_recv`: send then receive (Call, ReplyRecv, and the debug calls that
/// return a value). `mrs` goes in and comes back; returns `(x0 out: badge, info)`.
#[inline(always)]
pub(super) fn send_recv(sys: i64, dest: u64, info: u64, mrs: &mut [u64; 4]) -> (u64, u64) {
    let badge: u64;
    let info_out: u64;
    // SAFETY: as for `recv`.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x7") sys,
            inout("x0") dest => badge,
            inout("x1") info => info_out,
            inout("x2") mrs[0],
            inout("x3") mrs[1],
            inout("x4") mrs[2],
            inout("x5") mrs[3],
            options(nostack),
        );
    }
    (badge, info_out)
}

/// `arm_sys_null`: no arguments, no results (Yield, DebugHalt, DebugSnapshot).
#[inline(always)]
pub(super) fn null(sys: i64) {
    // SAFETY: `svc #0` with only x7 set; the kernel changes no register for these calls.
    // Not `nomem`, so the compiler keeps memory ordered around it, as libsel4's barrier.
    unsafe {
        core::arch::asm!("svc #0", in("x7") sys, options(nostack));
    }
}
