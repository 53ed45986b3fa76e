//! Raw seL4 system calls for AArch64 (non-MCS) and the IPC buffer.
//!
//! Owns the `svc` instruction and the calling thread's IPC buffer registration; never decides
//! what to send (that is [`crate::invocation`] and `RealKernel`).
//!
//! The system calls exist only on `aarch64-unknown-none`, and each only when the kernel
//! configuration at `$SEL4_PREFIX` has it: the numbers come from the generated
//! [`crate::generated::syscall`] module and the functions are gated by the generated
//! `if_syscall!` macro (e.g. `debug_put_char` needs `CONFIG_PRINTING`, `debug_halt`
//! `CONFIG_DEBUG_BUILD`). The non-MCS ABI is assumed; the code generator refuses MCS kernels.
//!
//! # The IPC buffer
//!
//! Message registers 4.. live in the thread's IPC buffer, which the kernel reads on send and
//! writes on receive. Every call that can make the kernel touch it takes `&mut IpcBuffer`,
//! so Rust's aliasing rules cover the kernel's accesses too. The caller must pass the buffer
//! registered for the calling thread (`TCB_Configure`'s `buffer`, or bootinfo's for the root
//! task). The buffer is handed over once as `&'static mut` (normally to `RealKernel`), so
//! exactly one owner can reach it.
//!
//! For code that has no handle to pass the buffer down (a debug helper, a panic path),
//! `set_ipc_buffer` registers it per thread in `TPIDR_EL0`, and `with_ipc_buffer` lends
//! it out. Why `TPIDR_EL0`: `aarch64-unknown-none` has no thread-local storage without a
//! TLS runtime, a `static` would be shared by all threads of the root task (each has its own
//! buffer), and the kernel saves and restores `TPIDR_EL0` per thread (it is the user TLS
//! register, `seL4_UserContext::tpidr_el0`). capvisor sets up no TLS, so the register is
//! free. Invariant of this crate: `TPIDR_EL0` is either 0 or a pointer placed by
//! `set_ipc_buffer`; a thread creator passing a non-zero `tpidr_el0` in
//! `TCB_WriteRegisters` breaks it.

mod ipc_buffer;

pub use ipc_buffer::{FAST_MESSAGE_REGISTERS, IpcBuffer, MSG_MAX_EXTRA_CAPS, MSG_MAX_LENGTH};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod aarch64;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use target::*;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod target {
    use super::aarch64 as raw;
    use super::{FAST_MESSAGE_REGISTERS, IpcBuffer};
    use crate::cap::CPtr;
    use crate::generated::{if_syscall, syscall};
    use crate::message_info::MessageInfo;

    /// The first four message registers as the registers x2..x5 carry them.
    fn fast_mrs(ipc: &IpcBuffer) -> [u64; FAST_MESSAGE_REGISTERS] {
        [ipc.msg[0], ipc.msg[1], ipc.msg[2], ipc.msg[3]]
    }

    fn store_fast_mrs(ipc: &mut IpcBuffer, mrs: [u64; FAST_MESSAGE_REGISTERS]) {
        ipc.msg[..FAST_MESSAGE_REGISTERS].copy_from_slice(&mrs);
    }

    if_syscall!(Send {
        /// `seL4_Send`: blocking send of `info.length()` message registers from `ipc`.
        pub fn send(ipc: &mut IpcBuffer, dest: CPtr, info: MessageInfo) {
            raw::send(syscall::SEND, dest.bits(), info.word(), fast_mrs(ipc));
        }
    });

    if_syscall!(NBSend {
        /// `seL4_NBSend`: send that is dropped if no receiver is waiting.
        pub fn nb_send(ipc: &mut IpcBuffer, dest: CPtr, info: MessageInfo) {
            raw::send(syscall::NB_SEND, dest.bits(), info.word(), fast_mrs(ipc));
        }
    });

    if_syscall!(Reply {
        /// `seL4_Reply` (non-MCS): reply to the thread this one last received a call from.
        pub fn reply(ipc: &mut IpcBuffer, info: MessageInfo) {
            raw::reply(syscall::REPLY, info.word(), fast_mrs(ipc));
        }
    });

    if_syscall!(Call {
        /// `seL4_Call`: send and wait for the reply; the reply's message registers are left
        /// in `ipc.msg`. Kernel invocations are calls on the object's capability.
        pub fn call(ipc: &mut IpcBuffer, dest: CPtr, info: MessageInfo) -> MessageInfo {
            let mut mrs = fast_mrs(ipc);
            let (_, out) = raw::send_recv(syscall::CALL, dest.bits(), info.word(), &mut mrs);
            store_fast_mrs(ipc, mrs);
            MessageInfo::from_word(out)
        }
    });

    if_syscall!(ReplyRecv {
        /// `seL4_ReplyRecv` (non-MCS): reply, then wait on `src`. Returns the received
        /// message info and the sender's badge; the message is left in `ipc.msg`.
        pub fn reply_recv(ipc: &mut IpcBuffer, src: CPtr, info: MessageInfo) -> (MessageInfo, u64) {
            let mut mrs = fast_mrs(ipc);
            let (badge, out) = raw::send_recv(syscall::REPLY_RECV, src.bits(), info.word(), &mut mrs);
            store_fast_mrs(ipc, mrs);
            (MessageInfo::from_word(out), badge)
        }
    });

    if_syscall!(Recv {
        /// `seL4_Recv` (non-MCS): wait for a message on `src`. Returns the message info and
        /// the sender's badge; the message is left in `ipc.msg`.
        pub fn recv(ipc: &mut IpcBuffer, src: CPtr) -> (MessageInfo, u64) {
            let (badge, info, mrs) = raw::recv(syscall::RECV, src.bits());
            store_fast_mrs(ipc, mrs);
            (MessageInfo::from_word(info), badge)
        }

        /// `seL4_Wait` (non-MCS): `seL4_Recv` on a notification; returns the badge bits.
        pub fn wait(ipc: &mut IpcBuffer, src: CPtr) -> u64 {
            recv(ipc, src).1
        }
    });

    if_syscall!(NBRecv {
        /// `seL4_NBRecv` (non-MCS): like [`recv`] but returns at once if nothing is pending.
        pub fn nb_recv(ipc: &mut IpcBuffer, src: CPtr) -> (MessageInfo, u64) {
            let (badge, info, mrs) = raw::recv(syscall::NB_RECV, src.bits());
            store_fast_mrs(ipc, mrs);
            (MessageInfo::from_word(info), badge)
        }

        /// `seL4_Poll` (non-MCS): `seL4_NBRecv` on a notification; the badge bits, 0 if it
        /// was not signalled.
        pub fn poll(ipc: &mut IpcBuffer, src: CPtr) -> u64 {
            nb_recv(ipc, src).1
        }
    });

    if_syscall!(Send {
        /// `seL4_Signal`: a `Send` with an empty message on a notification.
        pub fn signal(dest: CPtr) {
            raw::send_null(syscall::SEND, dest.bits(), MessageInfo::new(0, 0, 0, 0).word());
        }
    });

    if_syscall!(Yield {
        /// `seL4_Yield`: give up the rest of this time slice.
        pub fn yield_now() {
            raw::null(syscall::YIELD);
        }
    });

    if_syscall!(DebugPutChar {
        /// `seL4_DebugPutChar`: one byte to the kernel's serial console.
        pub fn debug_put_char(c: u8) {
            let mut unused = [0; 4];
            raw::send_recv(syscall::DEBUG_PUT_CHAR, u64::from(c), 0, &mut unused);
        }

        /// Every byte of `s` through [`debug_put_char`].
        pub fn debug_put_str(s: &str) {
            for b in s.bytes() {
                debug_put_char(b);
            }
        }
    });

    if_syscall!(DebugDumpScheduler {
        /// `seL4_DebugDumpScheduler`: the kernel prints its thread list.
        pub fn debug_dump_scheduler() {
            let mut unused = [0; 4];
            raw::send_recv(syscall::DEBUG_DUMP_SCHEDULER, 0, 0, &mut unused);
        }
    });

    if_syscall!(DebugHalt {
        /// `seL4_DebugHalt`: stop the whole system (debug kernels only).
        pub fn debug_halt() {
            raw::null(syscall::DEBUG_HALT);
        }
    });

    if_syscall!(DebugSnapshot {
        /// `seL4_DebugSnapshot`: the kernel dumps the capability state (debug kernels).
        pub fn debug_snapshot() {
            raw::null(syscall::DEBUG_SNAPSHOT);
        }
    });

    if_syscall!(DebugCapIdentify {
        /// `seL4_DebugCapIdentify`: the kernel's cap type tag of the capability at `cap`
        /// (0 for the null capability).
        pub fn debug_cap_identify(cap: CPtr) -> u32 {
            let mut unused = [0; 4];
            let (tag, _) = raw::send_recv(syscall::DEBUG_CAP_IDENTIFY, cap.bits(), 0, &mut unused);
            // The kernel returns a cap_tag_t (a small enum) in x0; libsel4 truncates the same way.
            tag as u32
        }
    });

    if_syscall!(DebugNameThread {
        /// `seL4_DebugNameThread`: names `tcb` in kernel diagnostics. The name is copied,
        /// NUL-terminated, into the message registers of `ipc` (where the kernel reads it),
        /// truncated to fit.
        pub fn debug_name_thread(ipc: &mut IpcBuffer, tcb: CPtr, name: &str) {
            const CAP: usize = super::MSG_MAX_LENGTH * 8;
            let mut bytes = [0u8; CAP];
            let n = name.len().min(CAP - 1);
            bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
            for (word, chunk) in ipc.msg.iter_mut().zip(bytes.chunks_exact(8)) {
                // The kernel reads the buffer as bytes in memory order; AArch64 is little-endian.
                *word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            }
            let mut unused = [0; 4];
            raw::send_recv(syscall::DEBUG_NAME_THREAD, tcb.bits(), 0, &mut unused);
        }
    });

    // ---- Per-thread IPC buffer registration in TPIDR_EL0 (see the module docs) ----

    fn read_tpidr() -> usize {
        let v: usize;
        // SAFETY: reading the EL0 thread-ID register has no side effects.
        unsafe { core::arch::asm!("mrs {}, tpidr_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }

    fn write_tpidr(v: usize) {
        // SAFETY: TPIDR_EL0 is a scratch register for EL0 software; by this crate's
        // invariant only this module gives it meaning.
        unsafe { core::arch::asm!("msr tpidr_el0, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
    }

    /// Registers `buf` as the calling thread's IPC buffer for [`with_ipc_buffer`]. Returns
    /// the previously registered buffer, if any. `buf` must be the buffer the kernel has
    /// registered for this thread, or the system calls made through it will send garbage.
    pub fn set_ipc_buffer(buf: &'static mut IpcBuffer) -> Option<&'static mut IpcBuffer> {
        let old = take_ipc_buffer();
        write_tpidr(buf as *mut IpcBuffer as usize);
        old
    }

    /// Removes and returns the calling thread's registered IPC buffer (e.g. to hand it to a
    /// `RealKernel`).
    pub fn take_ipc_buffer() -> Option<&'static mut IpcBuffer> {
        let p = read_tpidr() as *mut IpcBuffer;
        if p.is_null() || !p.is_aligned() {
            return None;
        }
        write_tpidr(0);
        // SAFETY: a non-zero, aligned TPIDR_EL0 was written by `set_ipc_buffer` from a
        // `&'static mut IpcBuffer` of this thread (crate invariant, module docs); clearing the
        // register first makes this the only reference.
        Some(unsafe { &mut *p })
    }

    /// Runs `f` with the calling thread's registered IPC buffer; `None` if none is
    /// registered or it is already lent out (a nested call).
    pub fn with_ipc_buffer<R>(f: impl FnOnce(&mut IpcBuffer) -> R) -> Option<R> {
        struct Restore(*mut IpcBuffer);
        impl Drop for Restore {
            fn drop(&mut self) {
                write_tpidr(self.0 as usize);
            }
        }
        let buf = take_ipc_buffer()?;
        let restore = Restore(buf as *mut IpcBuffer);
        // SAFETY: `restore.0` came from the unique `&'static mut` just taken; the register is
        // cleared until `restore` drops, so no other reference is created meanwhile.
        let r = f(unsafe { &mut *restore.0 });
        drop(restore);
        Some(r)
    }
}
