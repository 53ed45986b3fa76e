//! Kernel invocations as data: the labels, encoders and decoders generated from the interface
//! XML (re-exported from [`crate::generated::interface`]) and the [`Invocation`] message they
//! produce.
//!
//! Owns the shape of a request; never performs one (that is [`crate::sys`] via
//! `RealKernel`). Everything here is plain Rust, so the packing is tested on the host.
//!
//! ```
//! use sel4::invocation::{InvocationLabel, encode};
//! // virq 27, priority 0xa0, group 1, list register 0: four fields in one message word.
//! let inv = encode::arm_vcpu_inject_irq(27, 0xa0, 1, 0);
//! assert_eq!(inv.label(), Some(InvocationLabel::ARMVCPUInjectIRQ));
//! assert_eq!(inv.words(), &[27 | 0xa0 << 16 | 1 << 24]);
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

#[cfg(test)]
mod tests {
    //! Packing checks. Expected words are derived by hand from syscall_stub_gen.py's rules:
    //! parameters in XML order, capability-typed ones (after the service) become extra caps,
    //! the rest are laid out from bit 0, each aligned to min(its size, 64) bits; seL4_Bool is
    //! 1 bit, seL4_Uint8 8, seL4_Uint16 16, seL4_Word / seL4_CapRights_t /
    //! seL4_ARM_VMAttributes / seL4_VCPUReg one word, seL4_UserContext 36 words.

    use super::*;
    use crate::cap::CapRights;
    use crate::cap::VmAttributes;
    use crate::generated::object_type;
    use crate::kernel::UserContext;

    fn cptr(n: u64) -> CPtr {
        CPtr::from_bits(n)
    }

    #[test]
    fn tcb_read_registers_packs_suspend_and_arch_flags_into_one_word() {
        // suspend_source: bool at bit 0 (1 bit); arch_flags: u8 aligned up to bit 8;
        // count: a word, aligned up to bit 64 = word 1.
        let inv = encode::tcb_read_registers(true, 0xa5, 36);
        assert_eq!(inv.label(), Some(InvocationLabel::TCBReadRegisters));
        assert_eq!(inv.words(), &[0x1 | 0xa5 << 8, 36]);
        assert!(inv.caps().is_empty());
        assert_eq!((inv.info().length(), inv.info().extra_caps()), (2, 0));
        // Not suspending leaves bit 0 clear; arch_flags keep their place.
        assert_eq!(encode::tcb_read_registers(false, 1, 5).words(), &[0x100, 5]);
    }

    #[test]
    fn tcb_write_registers_sends_flags_count_then_36_register_words() {
        let mut ctx = UserContext { pc: 0x4000_0000, sp: 0x8000, spsr: 0x3c5, ..Default::default() };
        for (n, x) in ctx.x.iter_mut().enumerate() {
            *x = 0x100 + n as u64;
        }
        let regs = ctx.to_words();
        let inv = encode::tcb_write_registers(true, 0, 36, &regs);
        assert_eq!(inv.label(), Some(InvocationLabel::TCBWriteRegisters));
        assert_eq!(inv.info().length(), 38);
        assert_eq!(&inv.words()[..2], &[1, 36]);
        assert_eq!(&inv.words()[2..], &regs[..]);
        assert_eq!(inv.words()[2], 0x4000_0000, "pc is the first register word");
    }

    #[test]
    fn cnode_mint_takes_src_root_as_the_only_extra_cap() {
        // dest_index word 0; dest_depth u8 at bit 64 (word 1, alone, because src_index is a
        // word and aligns to 128); src_index word 2; src_depth u8 word 3; rights word 4 (the
        // bitfield's single word: write bit 0, read bit 1); badge word 5.
        let inv = encode::cnode_mint(0x1234, 64, cptr(2), 77, 64, CapRights::READ_WRITE, 0xbeef);
        assert_eq!(inv.label(), Some(InvocationLabel::CNodeMint));
        assert_eq!(inv.words(), &[0x1234, 64, 77, 64, 0b11, 0xbeef]);
        assert_eq!(inv.caps(), &[cptr(2)]);
        assert_eq!(inv.info().extra_caps(), 1);
    }

    #[test]
    fn cnode_copy_and_delete() {
        let inv = encode::cnode_copy(9, 64, cptr(2), 10, 64, CapRights::ALL);
        assert_eq!(inv.words(), &[9, 64, 10, 64, 0b1111]);
        assert_eq!(inv.caps(), &[cptr(2)]);
        // Delete: index word 0, depth u8 at word 1; no extra caps.
        let inv = encode::cnode_delete(300, 64);
        assert_eq!(inv.label(), Some(InvocationLabel::CNodeDelete));
        assert_eq!(inv.words(), &[300, 64]);
        assert!(inv.caps().is_empty());
    }

    #[test]
    fn untyped_retype_passes_the_root_cnode_as_extra_cap_0() {
        // type, size_bits, node_index, node_depth, node_offset, num_objects: six words; root
        // (seL4_CNode) is the extra cap.
        let inv = encode::untyped_retype(object_type::TCB, 0, cptr(2), 0, 0, 100, 5);
        assert_eq!(inv.label(), Some(InvocationLabel::UntypedRetype));
        assert_eq!(inv.words(), &[object_type::TCB, 0, 0, 0, 100, 5]);
        assert_eq!(inv.caps(), &[cptr(2)]);
    }

    #[test]
    fn vcpu_inject_irq_packs_four_small_fields_into_one_word() {
        // virq u16 at bit 0, priority u8 at 16, group u8 at 24, index u8 at 32.
        let inv = encode::arm_vcpu_inject_irq(0x1ab, 0xa0, 1, 3);
        assert_eq!(inv.label(), Some(InvocationLabel::ARMVCPUInjectIRQ));
        assert_eq!(inv.words(), &[0x1ab | 0xa0 << 16 | 1 << 24 | 3 << 32]);
        assert_eq!(inv.words(), &[0x0000_0003_01a0_01ab]);
        // Extreme values stay in their fields.
        assert_eq!(encode::arm_vcpu_inject_irq(0xffff, 0, 0, 0xff).words(), &[0xff_0000_ffff]);
    }

    #[test]
    fn tcb_configure_non_mcs_caps_and_words() {
        // fault_ep is a plain word in the non-MCS API (looked up by the kernel later);
        // cspace_root, vspace_root and bufferFrame are the three extra caps, in order.
        let inv = encode::tcb_configure(0x55, cptr(2), 0, cptr(3), 0, 0x1000, cptr(10));
        assert_eq!(inv.label(), Some(InvocationLabel::TCBConfigure));
        assert_eq!(inv.words(), &[0x55, 0, 0, 0x1000]);
        assert_eq!(inv.caps(), &[cptr(2), cptr(3), cptr(10)]);
        assert_eq!(inv.info().extra_caps(), 3);
    }

    #[test]
    fn page_map_irq_get_trigger_and_asid_make_pool() {
        let attrs = VmAttributes::PAGE_CACHEABLE.union(VmAttributes::EXECUTE_NEVER);
        let inv = encode::arm_page_map(cptr(3), 0x4000_0000, CapRights::READ_ONLY, attrs);
        assert_eq!(inv.words(), &[0x4000_0000, 0b10, 0b101]);
        assert_eq!(inv.caps(), &[cptr(3)]);

        // irq, trigger words; root cap; index word; depth u8 in its own word.
        let inv = encode::irq_control_get_trigger(33, 1, cptr(2), 400, 64);
        assert_eq!(inv.label(), Some(InvocationLabel::ARMIRQIssueIRQHandlerTrigger));
        assert_eq!(inv.words(), &[33, 1, 400, 64]);
        assert_eq!(inv.caps(), &[cptr(2)]);

        // untyped and root are caps; index word; depth u8.
        let inv = encode::arm_asid_control_make_pool(cptr(20), cptr(2), 401, 64);
        assert_eq!(inv.words(), &[401, 64]);
        assert_eq!(inv.caps(), &[cptr(20), cptr(2)]);
    }

    #[test]
    fn methods_without_arguments_send_an_empty_message() {
        for inv in [encode::arm_page_unmap(), encode::tcb_resume(), encode::irq_handler_ack()] {
            assert_eq!((inv.info().length(), inv.info().extra_caps()), (0, 0));
        }
        assert_eq!(encode::tcb_resume().label(), Some(InvocationLabel::TCBResume));
    }

    #[test]
    fn decoders_read_out_parameters_from_the_reply() {
        assert_eq!(decode::arm_page_get_address(&[0x6000_0000]), 0x6000_0000);
        assert_eq!(decode::arm_vcpu_read_regs(&[42]), 42);
        let mut ctx = UserContext { pc: 1, sp: 2, spsr: 3, tpidr_el0: 4, tpidrro_el0: 5, ..Default::default() };
        ctx.x[30] = 0x30;
        let words = decode::tcb_read_registers(&ctx.to_words());
        assert_eq!(UserContext::from_words(&words), ctx);
        // A short reply never indexes out of bounds: missing words read as 0.
        assert_eq!(decode::arm_page_get_address(&[]), 0);
        assert_eq!(decode::tcb_read_registers(&[7])[..2], [7, 0]);
    }

    #[test]
    fn labels_round_trip_and_are_dense() {
        assert_eq!(InvocationLabel::from_u64(0), Some(InvocationLabel::InvalidInvocation));
        for (i, l) in InvocationLabel::ALL.iter().enumerate() {
            assert_eq!(*l as u64, i as u64 + 1);
            assert_eq!(InvocationLabel::from_u64(*l as u64), Some(*l));
        }
        assert_eq!(InvocationLabel::from_u64(InvocationLabel::ALL.len() as u64 + 1), None);
        assert_eq!(InvocationLabel::ARMVCPUInjectIRQ.name(), "ARMVCPUInjectIRQ");
    }
}
