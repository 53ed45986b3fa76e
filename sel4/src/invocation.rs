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

    /// The same request with its message cut to the first `words` words (never lengthened):
    /// for invocations whose trailing words the kernel reads only when a count says so
    /// (`TCB_WriteRegisters`), so they need not be copied into the IPC buffer.
    pub fn truncated(mut self, words: usize) -> Self {
        let n = (self.info.length() as usize).min(words);
        self.info = MessageInfo::new(self.info.label(), 0, self.info.extra_caps(), n as u64);
        self
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

/// An invocation and the capability it is made on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Request {
    /// The invoked (service) capability.
    pub service: CPtr,
    /// The message.
    pub inv: Invocation,
}

/// The request behind each [`crate::Kernel`] method, exactly as libsel4's callers build it:
/// which capability is invoked, which slots are addressed through which CNode. Pure, so
/// the mapping is tested on the host; `RealKernel` only sends these.
pub mod request {
    use super::{Request, encode};
    use crate::addr::VirtAddr;
    use crate::bootinfo::init_cap;
    use crate::cap::{CPtr, Cap, CapRights, Slot, VmAttributes, cap_type};
    use crate::kernel::{CNodeSlot, CacheOp, UserContext, VCpuReg};
    use crate::object::ObjectBlueprint;

    /// Depth that resolves a whole CPtr in the root task's single-level CSpace.
    const ROOT_DEPTH: u8 = 64;

    fn req<T: crate::cap::CapType>(service: Cap<T>, inv: super::Invocation) -> Request {
        Request { service: service.cptr(), inv }
    }

    /// `Untyped_Retype` into root CNode slots `dest..dest+count`: the root CNode is extra cap
    /// 0 and, with `node_depth` 0, itself the destination CNode; `node_offset` is the slot.
    pub fn untyped_retype(
        untyped: Cap<cap_type::Untyped>,
        blueprint: ObjectBlueprint,
        dest: Slot,
        count: u64,
    ) -> Request {
        let inv = encode::untyped_retype(
            blueprint.object_type(),
            blueprint.api_size_bits(),
            init_cap::CNODE.cptr(),
            0,
            0,
            dest.index(),
            count,
        );
        req(untyped, inv)
    }

    /// `CNode_Copy`, invoked on the destination CNode; the source is a root CNode slot.
    pub fn cnode_copy(dest: CNodeSlot, src: Slot, rights: CapRights) -> Request {
        let inv = encode::cnode_copy(dest.index, dest.depth, init_cap::CNODE.cptr(), src.index(), ROOT_DEPTH, rights);
        req(dest.cnode, inv)
    }

    /// `CNode_Mint`, as [`cnode_copy`] plus a badge.
    pub fn cnode_mint(dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> Request {
        let inv =
            encode::cnode_mint(dest.index, dest.depth, init_cap::CNODE.cptr(), src.index(), ROOT_DEPTH, rights, badge);
        req(dest.cnode, inv)
    }

    /// `CNode_Move`, invoked on the destination CNode.
    pub fn cnode_move(dest: CNodeSlot, src: Slot) -> Request {
        let inv = encode::cnode_move(dest.index, dest.depth, init_cap::CNODE.cptr(), src.index(), ROOT_DEPTH);
        req(dest.cnode, inv)
    }

    /// `CNode_Delete`, invoked on the CNode the slot is addressed through.
    pub fn cnode_delete(slot: CNodeSlot) -> Request {
        req(slot.cnode, encode::cnode_delete(slot.index, slot.depth))
    }

    /// `CNode_Revoke`.
    pub fn cnode_revoke(slot: CNodeSlot) -> Request {
        req(slot.cnode, encode::cnode_revoke(slot.index, slot.depth))
    }

    /// `ARM_Page_Map`, invoked on the frame; the VSpace is the extra cap.
    pub fn page_map(
        frame: Cap<cap_type::Frame>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Request {
        req(frame, encode::arm_page_map(vspace.cptr(), vaddr.get(), rights, attrs))
    }

    /// `ARM_Page_Unmap`.
    pub fn page_unmap(frame: Cap<cap_type::Frame>) -> Request {
        req(frame, encode::arm_page_unmap())
    }

    /// `ARM_Page_GetAddress`.
    pub fn page_get_address(frame: Cap<cap_type::Frame>) -> Request {
        req(frame, encode::arm_page_get_address())
    }

    /// `ARM_Page_Clean_Data`, `Invalidate_Data`, `CleanInvalidate_Data`, `Unify_Instruction`.
    pub fn page_flush(frame: Cap<cap_type::Frame>, op: CacheOp, start: u64, end: u64) -> Request {
        let inv = match op {
            CacheOp::CleanData => encode::arm_page_clean_data(start, end),
            CacheOp::InvalidateData => encode::arm_page_invalidate_data(start, end),
            CacheOp::CleanInvalidateData => encode::arm_page_clean_invalidate_data(start, end),
            CacheOp::UnifyInstruction => encode::arm_page_unify_instruction(start, end),
        };
        req(frame, inv)
    }

    /// `ARM_PageTable_Map`.
    pub fn page_table_map(
        table: Cap<cap_type::PageTable>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        attrs: VmAttributes,
    ) -> Request {
        req(table, encode::arm_page_table_map(vspace.cptr(), vaddr.get(), attrs))
    }

    /// `ARM_PageTable_Unmap`.
    pub fn page_table_unmap(table: Cap<cap_type::PageTable>) -> Request {
        req(table, encode::arm_page_table_unmap())
    }

    /// `ARM_ASIDControl_MakePool`: the untyped and the destination CNode are extra caps.
    pub fn asid_control_make_pool(
        control: Cap<cap_type::AsidControl>,
        untyped: Cap<cap_type::Untyped>,
        dest: CNodeSlot,
    ) -> Request {
        req(control, encode::arm_asid_control_make_pool(untyped.cptr(), dest.cnode.cptr(), dest.index, dest.depth))
    }

    /// `ARM_ASIDPool_Assign`.
    pub fn asid_pool_assign(pool: Cap<cap_type::AsidPool>, vspace: Cap<cap_type::VSpace>) -> Request {
        req(pool, encode::arm_asid_pool_assign(vspace.cptr()))
    }

    /// `TCB_Configure` (non-MCS): `fault_ep` travels as a word (the kernel resolves it at
    /// fault time in the thread's own CSpace); `vspace_root_data` is unused on AArch64 (0).
    pub fn tcb_configure(
        tcb: Cap<cap_type::Tcb>,
        fault_ep: CPtr,
        cspace_root: Cap<cap_type::CNode>,
        cspace_root_data: u64,
        vspace_root: Cap<cap_type::VSpace>,
        ipc_buffer_addr: VirtAddr,
        ipc_buffer_frame: Cap<cap_type::Granule>,
    ) -> Request {
        let inv = encode::tcb_configure(
            fault_ep.bits(),
            cspace_root.cptr(),
            cspace_root_data,
            vspace_root.cptr(),
            0,
            ipc_buffer_addr.get(),
            ipc_buffer_frame.cptr(),
        );
        req(tcb, inv)
    }

    /// `TCB_SetPriority`.
    pub fn tcb_set_priority(tcb: Cap<cap_type::Tcb>, authority: Cap<cap_type::Tcb>, priority: u64) -> Request {
        req(tcb, encode::tcb_set_priority(authority.cptr(), priority))
    }

    crate::generated::if_method!(TCBSetAffinity {
        /// `TCB_SetAffinity`; `None` in a configuration without it (one core, or MCS).
        pub fn tcb_set_affinity(tcb: Cap<cap_type::Tcb>, core: u64) -> Option<Request> {
            Some(req(tcb, encode::tcb_set_affinity(core)))
        }
    } else {
        /// `TCB_SetAffinity`; `None` in a configuration without it (one core, or MCS).
        pub fn tcb_set_affinity(_tcb: Cap<cap_type::Tcb>, _core: u64) -> Option<Request> {
            None
        }
    });

    /// `TCB_WriteRegisters` of all [`UserContext::WORDS`] registers, no arch flags.
    pub fn tcb_write_registers(tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext) -> Request {
        req(tcb, encode::tcb_write_registers(resume, 0, UserContext::WORDS as u64, &regs.to_words()))
    }

    /// `TCB_WriteRegisters` of the first `count` registers (clamped to
    /// [`UserContext::WORDS`]), no arch flags; the message carries only those words.
    pub fn tcb_write_registers_prefix(
        tcb: Cap<cap_type::Tcb>,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> Request {
        let count = count.min(UserContext::WORDS);
        let inv = encode::tcb_write_registers(resume, 0, count as u64, &regs.to_words());
        req(tcb, inv.truncated(2 + count))
    }

    /// `TCB_ReadRegisters` of all [`UserContext::WORDS`] registers, no arch flags.
    pub fn tcb_read_registers(tcb: Cap<cap_type::Tcb>, suspend: bool) -> Request {
        req(tcb, encode::tcb_read_registers(suspend, 0, UserContext::WORDS as u64))
    }

    /// `TCB_Resume`.
    pub fn tcb_resume(tcb: Cap<cap_type::Tcb>) -> Request {
        req(tcb, encode::tcb_resume())
    }

    /// `TCB_Suspend`.
    pub fn tcb_suspend(tcb: Cap<cap_type::Tcb>) -> Request {
        req(tcb, encode::tcb_suspend())
    }

    /// `TCB_BindNotification`.
    pub fn tcb_bind_notification(tcb: Cap<cap_type::Tcb>, ntfn: Cap<cap_type::Notification>) -> Request {
        req(tcb, encode::tcb_bind_notification(ntfn.cptr()))
    }

    /// `ARM_VCPU_SetTCB`.
    pub fn vcpu_set_tcb(vcpu: Cap<cap_type::VCpu>, tcb: Cap<cap_type::Tcb>) -> Request {
        req(vcpu, encode::arm_vcpu_set_tcb(tcb.cptr()))
    }

    /// `ARM_VCPU_InjectIRQ`.
    pub fn vcpu_inject_irq(vcpu: Cap<cap_type::VCpu>, virq: u16, priority: u8, group: u8, index: u8) -> Request {
        req(vcpu, encode::arm_vcpu_inject_irq(virq, priority, group, index))
    }

    /// `ARM_VCPU_ReadRegs`.
    pub fn vcpu_read_reg(vcpu: Cap<cap_type::VCpu>, reg: VCpuReg) -> Request {
        req(vcpu, encode::arm_vcpu_read_regs(reg as u64))
    }

    /// `ARM_VCPU_WriteRegs`.
    pub fn vcpu_write_reg(vcpu: Cap<cap_type::VCpu>, reg: VCpuReg, value: u64) -> Request {
        req(vcpu, encode::arm_vcpu_write_regs(reg as u64, value))
    }

    /// `ARM_VCPU_AckVPPI`.
    pub fn vcpu_ack_vppi(vcpu: Cap<cap_type::VCpu>, irq: u64) -> Request {
        req(vcpu, encode::arm_vcpu_ack_vppi(irq))
    }

    /// `IRQControl_GetTrigger` (ARM): trigger 1 is edge, 0 level.
    pub fn irq_control_get(
        control: Cap<cap_type::IrqControl>,
        irq: u64,
        edge_triggered: bool,
        dest: CNodeSlot,
    ) -> Request {
        let inv =
            encode::irq_control_get_trigger(irq, u64::from(edge_triggered), dest.cnode.cptr(), dest.index, dest.depth);
        req(control, inv)
    }

    /// `IRQHandler_Ack`.
    pub fn irq_handler_ack(handler: Cap<cap_type::IrqHandler>) -> Request {
        req(handler, encode::irq_handler_ack())
    }

    /// `IRQHandler_SetNotification`.
    pub fn irq_handler_set_notification(
        handler: Cap<cap_type::IrqHandler>,
        ntfn: Cap<cap_type::Notification>,
    ) -> Request {
        req(handler, encode::irq_handler_set_notification(ntfn.cptr()))
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
    use crate::cap::{Cap, cap_type};
    use crate::generated::object_type;
    use crate::kernel::UserContext;

    fn cptr(n: u64) -> CPtr {
        CPtr::from_bits(n)
    }

    #[test]
    fn tcb_set_affinity_exists_only_on_a_multicore_non_mcs_kernel() {
        let tcb: Cap<cap_type::Tcb> = Cap::from_cptr(cptr(7));
        let req = request::tcb_set_affinity(tcb, 1);
        let configured = crate::config::ENABLE_SMP_SUPPORT && !crate::config::KERNEL_MCS;
        assert_eq!(req.is_some(), configured);
        if let Some(r) = req {
            assert_eq!(r.service, cptr(7));
            assert_eq!(r.inv.label().map(InvocationLabel::name), Some("TCBSetAffinity"));
            assert_eq!(r.inv.words(), &[1]);
            assert!(r.inv.caps().is_empty());
        }
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
    fn tcb_write_registers_prefix_sends_only_the_counted_words() {
        let ctx = UserContext { pc: 0x4000_0004, sp: 0x8000, spsr: 0x3c5, ..Default::default() };
        let tcb = Cap::<cap_type::Tcb>::from_cptr(cptr(9));
        let r = request::tcb_write_registers_prefix(tcb, false, &ctx, 1);
        assert_eq!(r.service, cptr(9));
        assert_eq!(r.inv.label(), Some(InvocationLabel::TCBWriteRegisters));
        assert_eq!(r.inv.words(), &[0, 1, 0x4000_0004], "flags, count 1, pc");
        let r = request::tcb_write_registers_prefix(tcb, true, &ctx, 3);
        assert_eq!(r.inv.words(), &[1, 3, 0x4000_0004, 0x8000, 0x3c5]);
        let all = request::tcb_write_registers_prefix(tcb, true, &ctx, 99);
        assert_eq!(all, request::tcb_write_registers(tcb, true, &ctx), "clamped to the whole file");
        // Truncation never lengthens and keeps label and caps.
        let inv = encode::cnode_mint(1, 64, cptr(2), 3, 64, CapRights::ALL, 5);
        assert_eq!(inv.truncated(99), inv);
        assert_eq!(inv.truncated(2).words(), &inv.words()[..2]);
        assert_eq!(inv.truncated(2).caps(), inv.caps());
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

    #[test]
    fn kernel_requests_address_slots_as_libsel4_callers_do() {
        use crate::addr::VirtAddr;
        use crate::bootinfo::init_cap;
        use crate::cap::{Cap, Slot, cap_type};
        use crate::kernel::{CNodeSlot, VCpuReg};
        use crate::object::ObjectBlueprint;

        let root = init_cap::CNODE.cptr();
        let ut: Cap<cap_type::Untyped> = Slot::new(200).cap();
        let r = request::untyped_retype(ut, ObjectBlueprint::CNode { slot_bits: 8 }, Slot::new(1000), 4);
        assert_eq!(r.service, cptr(200));
        // Root CNode as extra cap 0 and, at depth 0, the destination CNode itself.
        assert_eq!(r.inv.caps(), &[root]);
        assert_eq!(r.inv.words(), &[object_type::CAP_TABLE, 8, 0, 0, 1000, 4]);

        let dest = CNodeSlot::root(Slot::new(300));
        let r = request::cnode_mint(dest, Slot::new(40), CapRights::WRITE_ONLY, 7);
        assert_eq!(r.service, root, "CNode ops are invoked on the destination CNode");
        assert_eq!(r.inv.caps(), &[root], "the source root travels as the extra cap");
        assert_eq!(r.inv.words(), &[300, 64, 40, 64, 0b01, 7]);

        let other: Cap<cap_type::CNode> = Slot::new(77).cap();
        let r = request::cnode_delete(CNodeSlot { cnode: other, index: 5, depth: 12 });
        assert_eq!((r.service, r.inv.words()), (cptr(77), &[5u64, 12][..]));

        let r = request::irq_control_get(init_cap::IRQ_CONTROL.cap(), 79, true, CNodeSlot::root(Slot::new(9)));
        assert_eq!(r.service, init_cap::IRQ_CONTROL.cptr());
        assert_eq!(r.inv.words(), &[79, 1, 9, 64]);
        assert_eq!(request::irq_control_get(init_cap::IRQ_CONTROL.cap(), 79, false, dest).inv.words()[1], 0);

        let r = request::tcb_configure(
            Slot::new(50).cap(),
            cptr(60),
            init_cap::CNODE.cap(),
            0,
            init_cap::VSPACE.cap(),
            VirtAddr(0x7000),
            Slot::new(51).cap(),
        );
        assert_eq!(r.service, cptr(50));
        assert_eq!(r.inv.caps(), &[root, init_cap::VSPACE.cptr(), cptr(51)]);
        assert_eq!(r.inv.words(), &[60, 0, 0, 0x7000]);

        let r = request::vcpu_write_reg(Slot::new(70).cap(), VCpuReg::CntvCval, 0x1234);
        assert_eq!(r.inv.label(), Some(InvocationLabel::ARMVCPUWriteReg));
        assert_eq!(r.inv.words(), &[VCpuReg::CntvCval as u64, 0x1234]);
    }

    /// Differential check against the kernel's own generated stubs: when the prefix these
    /// bindings were generated from has libsel4's `interfaces/sel4_client.h` (an installed
    /// kernel such as the CMake build's build/sel4/release/prefix) and a host C compiler exists, each case is run through
    /// the real C stub with `seL4_CallWithMRs`/`seL4_SetMR`/`seL4_SetCap` replaced by
    /// recorders, and the recorded tag, caps and words must equal our encoder's.
    #[test]
    fn encoders_match_the_installed_libsel4_stubs() {
        extern crate std;
        use std::format;
        use std::path::PathBuf;
        use std::process::Command;
        use std::string::String;
        use std::vec::Vec;

        let prefix = PathBuf::from(env!("SEL4_PREFIX_RESOLVED"));
        let include = prefix.join("libsel4/include");
        if !include.join("interfaces/sel4_client.h").is_file() {
            sel4_codegen::skip::cannot_run(&format!(
                "{} has no libsel4 stubs (interfaces/sel4_client.h); build with SEL4_PREFIX at an installed kernel (the CMake build's build/sel4/release/prefix)",
                prefix.display()
            ));
            return;
        }
        if !Command::new("cc").arg("--version").output().is_ok_and(|o| o.status.success()) {
            sel4_codegen::skip::cannot_run("no host C compiler `cc`");
            return;
        }

        const SVC: u64 = 0x5e5;
        let mut regs = [0u64; 36];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = 0x1000 + i as u64;
        }
        let rights = CapRights { write: true, read: true, grant: false, grant_reply: true };
        let attrs = VmAttributes::from_bits(5);
        let cases: Vec<(&str, Invocation)> = std::vec![
            (
                "seL4_Untyped_Retype(SVC, 4, 8, 2, 0x11, 0x22, 1000, 5)",
                encode::untyped_retype(4, 8, cptr(2), 0x11, 0x22, 1000, 5)
            ),
            ("seL4_TCB_ReadRegisters(SVC, 1, 0xa5, 36, &ctx)", encode::tcb_read_registers(true, 0xa5, 36)),
            ("seL4_TCB_WriteRegisters(SVC, 1, 0x5a, 36, &ctx)", encode::tcb_write_registers(true, 0x5a, 36, &regs)),
            (
                "seL4_TCB_Configure(SVC, 0x55, 2, 0x66, 3, 0x77, 0x7000, 10)",
                encode::tcb_configure(0x55, cptr(2), 0x66, cptr(3), 0x77, 0x7000, cptr(10))
            ),
            ("seL4_TCB_SetPriority(SVC, 1, 200)", encode::tcb_set_priority(cptr(1), 200)),
            ("seL4_TCB_Resume(SVC)", encode::tcb_resume()),
            ("seL4_TCB_Suspend(SVC)", encode::tcb_suspend()),
            ("seL4_TCB_BindNotification(SVC, 33)", encode::tcb_bind_notification(cptr(33))),
            (
                "seL4_CNode_Copy(SVC, 300, 64, 2, 40, 63, seL4_CapRights_new(1, 0, 1, 1))",
                encode::cnode_copy(300, 64, cptr(2), 40, 63, rights)
            ),
            (
                "seL4_CNode_Mint(SVC, 300, 64, 2, 40, 63, seL4_CapRights_new(1, 0, 1, 1), 0xbeef)",
                encode::cnode_mint(300, 64, cptr(2), 40, 63, rights, 0xbeef)
            ),
            ("seL4_CNode_Move(SVC, 301, 12, 2, 41, 64)", encode::cnode_move(301, 12, cptr(2), 41, 64)),
            ("seL4_CNode_Delete(SVC, 302, 64)", encode::cnode_delete(302, 64)),
            ("seL4_CNode_Revoke(SVC, 303, 7)", encode::cnode_revoke(303, 7)),
            (
                "seL4_ARM_Page_Map(SVC, 3, 0x40000000, seL4_CapRights_new(1, 0, 1, 1), 5)",
                encode::arm_page_map(cptr(3), 0x4000_0000, rights, attrs)
            ),
            ("seL4_ARM_Page_Unmap(SVC)", encode::arm_page_unmap()),
            ("seL4_ARM_Page_GetAddress(SVC)", encode::arm_page_get_address()),
            ("seL4_ARM_Page_Clean_Data(SVC, 0x40, 0x1fffc0)", encode::arm_page_clean_data(0x40, 0x1f_ffc0)),
            ("seL4_ARM_Page_Invalidate_Data(SVC, 0x80, 0x1000)", encode::arm_page_invalidate_data(0x80, 0x1000)),
            (
                "seL4_ARM_Page_CleanInvalidate_Data(SVC, 0, 0x200000)",
                encode::arm_page_clean_invalidate_data(0, 0x20_0000)
            ),
            ("seL4_ARM_Page_Unify_Instruction(SVC, 0x10, 0x20)", encode::arm_page_unify_instruction(0x10, 0x20)),
            ("seL4_ARM_PageTable_Map(SVC, 3, 0x200000, 5)", encode::arm_page_table_map(cptr(3), 0x20_0000, attrs)),
            ("seL4_ARM_PageTable_Unmap(SVC)", encode::arm_page_table_unmap()),
            (
                "seL4_ARM_ASIDControl_MakePool(SVC, 20, 2, 401, 64)",
                encode::arm_asid_control_make_pool(cptr(20), cptr(2), 401, 64)
            ),
            ("seL4_ARM_ASIDPool_Assign(SVC, 3)", encode::arm_asid_pool_assign(cptr(3))),
            ("seL4_ARM_VCPU_SetTCB(SVC, 50)", encode::arm_vcpu_set_tcb(cptr(50))),
            ("seL4_ARM_VCPU_InjectIRQ(SVC, 0x1ab, 0xa0, 1, 3)", encode::arm_vcpu_inject_irq(0x1ab, 0xa0, 1, 3)),
            ("seL4_ARM_VCPU_ReadRegs(SVC, 21)", encode::arm_vcpu_read_regs(21)),
            ("seL4_ARM_VCPU_WriteRegs(SVC, 21, 0x1234)", encode::arm_vcpu_write_regs(21, 0x1234)),
            ("seL4_ARM_VCPU_AckVPPI(SVC, 27)", encode::arm_vcpu_ack_vppi(27)),
            (
                "seL4_IRQControl_GetTrigger(SVC, 79, 1, 2, 9, 64)",
                encode::irq_control_get_trigger(79, 1, cptr(2), 9, 64)
            ),
            ("seL4_IRQHandler_Ack(SVC)", encode::irq_handler_ack()),
            ("seL4_IRQHandler_SetNotification(SVC, 33)", encode::irq_handler_set_notification(cptr(33))),
        ];

        let mut c = String::from(
            "#include <stdio.h>\n#include <string.h>\n#include <sel4/config.h>\n#include <sel4/types.h>\n\
             #include <sel4/invocation.h>\n\
             static seL4_Word mrs[seL4_MsgMaxLength], caps[seL4_MsgMaxExtraCaps], tag, service;\n\
             static inline void seL4_SetMR(int i, seL4_Word v) { mrs[i] = v; }\n\
             static inline seL4_Word seL4_GetMR(int i) { return mrs[i]; }\n\
             static inline void seL4_SetCap(int i, seL4_CPtr c) { caps[i] = c; }\n\
             static inline seL4_MessageInfo_t seL4_CallWithMRs(seL4_CPtr s, seL4_MessageInfo_t t,\n\
             \x20   seL4_Word *m0, seL4_Word *m1, seL4_Word *m2, seL4_Word *m3) {\n\
             \x20 service = s; tag = t.words[0]; mrs[0] = *m0; mrs[1] = *m1; mrs[2] = *m2; mrs[3] = *m3;\n\
             \x20 return seL4_MessageInfo_new(0, 0, 0, 0);\n}\n\
             #include <interfaces/sel4_client.h>\n\
             static void dump(void) {\n\
             \x20 seL4_MessageInfo_t t = { { tag } };\n\
             \x20 printf(\"%lx %lx\", service, tag);\n\
             \x20 for (seL4_Word i = 0; i < seL4_MessageInfo_get_extraCaps(t); i++) printf(\" %lx\", caps[i]);\n\
             \x20 printf(\" |\");\n\
             \x20 for (seL4_Word i = 0; i < seL4_MessageInfo_get_length(t); i++) printf(\" %lx\", mrs[i]);\n\
             \x20 printf(\"\\n\");\n\
             \x20 memset(mrs, 0, sizeof mrs); memset(caps, 0, sizeof caps); tag = service = 0;\n}\n\
             #define SVC 0x5e5\nint main(void) {\n  seL4_UserContext ctx;\n",
        );
        for (call, _) in &cases {
            // ReadRegisters' stub writes the (recorded) reply into ctx: refill it every time.
            c.push_str("  for (int i = 0; i < 36; i++) ((seL4_Word *)&ctx)[i] = 0x1000 + i;\n");
            c.push_str(&format!("  {call}; dump();\n"));
        }
        c.push_str("  return 0;\n}\n");

        let dir = std::env::temp_dir().join(format!("sel4-stub-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, exe) = (dir.join("stubs.c"), dir.join("stubs"));
        std::fs::write(&src, &c).unwrap();
        let out = Command::new("cc").arg("-I").arg(&include).arg("-o").arg(&exe).arg(&src).output().unwrap();
        assert!(out.status.success(), "compiling the stubs failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(&exe).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), cases.len());
        let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
        for ((call, inv), line) in cases.iter().zip(&lines) {
            let (head, words) = line.split_once(" |").unwrap();
            let head: Vec<u64> = head.split_whitespace().map(hex).collect();
            let words: Vec<u64> = words.split_whitespace().map(hex).collect();
            let caps: Vec<CPtr> = head[2..].iter().map(|c| cptr(*c)).collect();
            assert_eq!(head[0], SVC, "{call}");
            assert_eq!(MessageInfo::from_word(head[1]), inv.info(), "{call}: tag");
            assert_eq!(caps.as_slice(), inv.caps(), "{call}: caps");
            assert_eq!(words.as_slice(), inv.words(), "{call}: words");
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::eprintln!("{} encoders agree with libsel4's stubs in {}", cases.len(), include.display());
    }
}
