//! The IPC buffer (`seL4_IPCBuffer`): the per-thread page-resident part of every message.
//!
//! Builds on every target so its layout is checked on the host; only the system calls that
//! use it are target-only.

use crate::cap::CPtr;
use crate::message_info::MessageInfo;

/// Message registers in the buffer (`seL4_MsgMaxLength`).
pub const MSG_MAX_LENGTH: usize = MessageInfo::MAX_LENGTH as usize;
/// Extra capability slots (`seL4_MsgMaxExtraCaps`).
pub const MSG_MAX_EXTRA_CAPS: usize = MessageInfo::MAX_EXTRA_CAPS as usize;

/// Message registers carried in machine registers (x2..x5) rather than in the buffer
/// (`seL4_FastMessageRegisters` on AArch64).
pub const FAST_MESSAGE_REGISTERS: usize = 4;

/// The kernel's `seL4_IPCBuffer`, field for field. The kernel aligns it to its own size
/// (1 KiB) so it never straddles a page.
#[repr(C, align(1024))]
#[derive(Clone, Debug)]
pub struct IpcBuffer {
    /// The message tag of the last message received (the kernel writes it on receive).
    pub tag: MessageInfo,
    /// Message registers; the first [`FAST_MESSAGE_REGISTERS`] of a message travel in
    /// machine registers, the rest are read from and written to here.
    pub msg: [u64; MSG_MAX_LENGTH],
    /// Free for the user (libsel4 keeps nothing here either).
    pub user_data: u64,
    /// Sending: the extra capabilities (CPtrs). Receiving: badges of unwrapped caps.
    pub caps_or_badges: [u64; MSG_MAX_EXTRA_CAPS],
    /// CNode in which a received capability is stored.
    pub receive_cnode: CPtr,
    /// Index of the slot for a received capability.
    pub receive_index: CPtr,
    /// Depth of `receive_index`.
    pub receive_depth: u64,
}

impl IpcBuffer {
    /// An all-zero buffer (what a freshly retyped frame holds).
    pub const fn zeroed() -> Self {
        IpcBuffer {
            tag: MessageInfo::from_word(0),
            msg: [0; MSG_MAX_LENGTH],
            user_data: 0,
            caps_or_badges: [0; MSG_MAX_EXTRA_CAPS],
            receive_cnode: CPtr::NULL,
            receive_index: CPtr::NULL,
            receive_depth: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout_matches_sel4_ipc_buffer() {
        // seL4_IPCBuffer: tag, msg[120], userData, caps_or_badges[3], receiveCNode,
        // receiveIndex, receiveDepth; 128 words, aligned to its size.
        assert_eq!(size_of::<IpcBuffer>(), 128 * 8);
        assert_eq!(align_of::<IpcBuffer>(), 1024);
        assert_eq!(offset_of!(IpcBuffer, tag), 0);
        assert_eq!(offset_of!(IpcBuffer, msg), 8);
        assert_eq!(offset_of!(IpcBuffer, user_data), 121 * 8);
        assert_eq!(offset_of!(IpcBuffer, caps_or_badges), 122 * 8);
        assert_eq!(offset_of!(IpcBuffer, receive_cnode), 125 * 8);
        assert_eq!(offset_of!(IpcBuffer, receive_index), 126 * 8);
        assert_eq!(offset_of!(IpcBuffer, receive_depth), 127 * 8);
    }
}
