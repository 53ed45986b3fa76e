//! Kernel invocations as data: the labels, encoders and decoders generated from the interface
//! XML (re-exported from [`crate::generated::interface`]) and the [`Invocation`] message they
//! produce.
//!
//! Owns the shape of a request; never performs one (that is [`crate::sys`] via
//! `RealKernel`). Everything here is plain Rust, so the packing is tested on the host.
//!
//! ```ignore
//! let inv = sel4::invocation::encode::arm_vcpu_inject_irq(virq, priority, group, index);
//! // inv.info(): label ARMVCPUInjectIRQ, 0 extra caps, length 1; inv.words(): [packed word]
//! ```

use crate::cap::CPtr;
use crate::message_info::MessageInfo;

pub use crate::generated::interface::{InvocationLabel, MAX_MESSAGE_WORDS, decode, encode};

/// One invocation request: the message tag, message words and extra capabilities, ready to
/// be copied into the IPC buffer and sent with `seL4_Call` on the service capability.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Invocation {
    info: MessageInfo,
    mrs: [u64; MAX_MESSAGE_WORDS],
    caps: [CPtr; MessageInfo::MAX_EXTRA_CAPS as usize],
}

impl Invocation {
    /// A request with `label`, extra capabilities `caps` and message words `words`.
    ///
    /// The generated encoders pass at most 3 caps and at most [`MAX_MESSAGE_WORDS`] words by
    /// construction; anything beyond is dropped (and the tag says so), never indexed out of
    /// bounds.
    pub fn new(label: u64, caps: &[CPtr], words: &[u64]) -> Self {
        let ncaps = caps.len().min(MessageInfo::MAX_EXTRA_CAPS as usize);
        let nwords = words.len().min(MAX_MESSAGE_WORDS);
        debug_assert!(caps.len() == ncaps && words.len() == nwords, "oversized invocation");
        let mut inv = Invocation {
            info: MessageInfo::new(label, 0, ncaps as u64, nwords as u64),
            mrs: [0; MAX_MESSAGE_WORDS],
            caps: [CPtr::NULL; MessageInfo::MAX_EXTRA_CAPS as usize],
        };
        inv.mrs[..nwords].copy_from_slice(&words[..nwords]);
        inv.caps[..ncaps].copy_from_slice(&caps[..ncaps]);
        inv
    }

    /// The message tag: label, number of extra caps, length.
    pub const fn info(&self) -> MessageInfo {
        self.info
    }

    /// The label, decoded (`None` only for a label this configuration lacks).
    pub const fn label(&self) -> Option<InvocationLabel> {
        InvocationLabel::from_u64(self.info.label())
    }

    /// The message words (`info().length()` of them).
    pub fn words(&self) -> &[u64] {
        &self.mrs[..self.info.length() as usize]
    }

    /// The extra capabilities (`info().extra_caps()` of them), in order.
    pub fn caps(&self) -> &[CPtr] {
        &self.caps[..self.info.extra_caps() as usize]
    }
}
