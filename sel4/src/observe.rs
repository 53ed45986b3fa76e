//! Watching a kernel: [`Observed`] passes every call to the [`Kernel`] it wraps and shows
//! each kernel entry to an [`Observer`] first, which may count it, log it, or (in tests) fail
//! it. [`OpCounts`] is the counting observer that cost assertions and benchmarks use; the
//! same accounting then runs over the real kernel (which counts nothing) and the model.
//!
//! Also here: `&mut K` is a [`Kernel`] whenever `K` is, so a wrapper can borrow the kernel it
//! watches for a while.
//!
//! Owns only the forwarding; never changes an argument or a result (except an invocation the
//! observer refuses, which is not made).

use crate::addr::{PhysAddr, VirtAddr};
use crate::cap::{CPtr, Cap, CapRights, Slot, VmAttributes, cap_type};
use crate::error::Result;
use crate::kernel::{CNodeSlot, CacheOp, Kernel, Message, Op, Received, UserContext, VCpuReg};
use crate::object::ObjectBlueprint;

/// Sees every kernel entry of an [`Observed`] kernel before it is made.
pub trait Observer {
    /// Every entry: invocations and IPC system calls alike.
    fn entry(&mut self, op: Op);

    /// A fallible invocation (every method that returns a [`Result`]). The default records
    /// the entry and lets it through; an error returned here is returned in place of making
    /// the invocation (fault injection in tests).
    fn invocation(&mut self, op: Op) -> Result<()> {
        self.entry(op);
        Ok(())
    }
}

/// A kernel whose entries an observer sees. See the module docs.
#[derive(Debug, Default)]
pub struct Observed<K, O> {
    /// The kernel that does the work.
    pub kernel: K,
    /// The observer.
    pub observer: O,
}

impl<K: Kernel, O: Observer> Observed<K, O> {
    /// Wraps `kernel`.
    pub fn new(kernel: K, observer: O) -> Self {
        Observed { kernel, observer }
    }
}

/// Entries by [`Op`], in [`Op::ALL`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpCounts([u64; Op::ALL.len()]);

impl Default for OpCounts {
    fn default() -> Self {
        OpCounts([0; Op::ALL.len()])
    }
}

impl OpCounts {
    fn index(op: Op) -> usize {
        // `Op::ALL` lists every variant once, so the search always succeeds.
        Op::ALL.iter().position(|o| *o == op).unwrap_or(0)
    }

    /// Entries of one kind.
    pub fn get(&self, op: Op) -> u64 {
        self.0[Self::index(op)]
    }

    /// All entries.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The entries made between `earlier` and `self`.
    pub fn since(&self, earlier: &OpCounts) -> OpCounts {
        let mut d = OpCounts::default();
        for (i, v) in d.0.iter_mut().enumerate() {
            *v = self.0[i].saturating_sub(earlier.0[i]);
        }
        d
    }

    /// The kinds with a non-zero count, with their counts, in [`Op::ALL`] order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Op, u64)> + '_ {
        Op::ALL.iter().zip(self.0.iter()).filter(|(_, n)| **n > 0).map(|(op, n)| (*op, *n))
    }
}

impl Observer for OpCounts {
    fn entry(&mut self, op: Op) {
        // Counts guest-driven exits too: saturate rather than ever panic.
        let c = &mut self.0[Self::index(op)];
        *c = c.saturating_add(1);
    }
}

/// Invokes `$callback!` with every [`Kernel`] method: `fallible` ones as
/// `name(args) -> T = Op`, then `infallible` ones likewise. One list, so a new trait method
/// is added here once for every forwarding impl.
macro_rules! kernel_methods {
    ($callback:ident) => {
        $callback! {
            fallible {
                untyped_retype(untyped: Cap<cap_type::Untyped>, blueprint: ObjectBlueprint, dest: Slot, count: u64) -> () = UntypedRetype;
                cnode_copy(dest: CNodeSlot, src: Slot, rights: CapRights) -> () = CNodeCopy;
                cnode_mint(dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> () = CNodeMint;
                cnode_move(dest: CNodeSlot, src: Slot) -> () = CNodeMove;
                cnode_delete(slot: CNodeSlot) -> () = CNodeDelete;
                cnode_revoke(slot: CNodeSlot) -> () = CNodeRevoke;
                page_map(frame: Cap<cap_type::Frame>, vspace: Cap<cap_type::VSpace>, vaddr: VirtAddr, rights: CapRights, attrs: VmAttributes) -> () = PageMap;
                page_unmap(frame: Cap<cap_type::Frame>) -> () = PageUnmap;
                page_get_address(frame: Cap<cap_type::Frame>) -> PhysAddr = PageGetAddress;
                page_flush(frame: Cap<cap_type::Frame>, op: CacheOp, start: u64, end: u64) -> () = PageFlush;
                page_table_map(table: Cap<cap_type::PageTable>, vspace: Cap<cap_type::VSpace>, vaddr: VirtAddr, attrs: VmAttributes) -> () = PageTableMap;
                page_table_unmap(table: Cap<cap_type::PageTable>) -> () = PageTableUnmap;
                asid_control_make_pool(control: Cap<cap_type::AsidControl>, untyped: Cap<cap_type::Untyped>, dest: CNodeSlot) -> () = AsidControlMakePool;
                asid_pool_assign(pool: Cap<cap_type::AsidPool>, vspace: Cap<cap_type::VSpace>) -> () = AsidPoolAssign;
                tcb_configure(tcb: Cap<cap_type::Tcb>, fault_ep: CPtr, cspace_root: Cap<cap_type::CNode>, cspace_root_data: u64, vspace_root: Cap<cap_type::VSpace>, ipc_buffer_addr: VirtAddr, ipc_buffer_frame: Cap<cap_type::Granule>) -> () = TcbConfigure;
                tcb_set_priority(tcb: Cap<cap_type::Tcb>, authority: Cap<cap_type::Tcb>, priority: u64) -> () = TcbSetPriority;
                tcb_set_affinity(tcb: Cap<cap_type::Tcb>, core: u64) -> () = TcbSetAffinity;
                tcb_write_registers(tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext) -> () = TcbWriteRegisters;
                tcb_write_registers_prefix(tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext, count: usize) -> () = TcbWriteRegisters;
                tcb_read_registers(tcb: Cap<cap_type::Tcb>, suspend: bool) -> UserContext = TcbReadRegisters;
                tcb_resume(tcb: Cap<cap_type::Tcb>) -> () = TcbResume;
                tcb_suspend(tcb: Cap<cap_type::Tcb>) -> () = TcbSuspend;
                tcb_bind_notification(tcb: Cap<cap_type::Tcb>, ntfn: Cap<cap_type::Notification>) -> () = TcbBindNotification;
                vcpu_set_tcb(vcpu: Cap<cap_type::VCpu>, tcb: Cap<cap_type::Tcb>) -> () = VCpuSetTcb;
                vcpu_inject_irq(vcpu: Cap<cap_type::VCpu>, virq: u16, priority: u8, group: u8, index: u8) -> () = VCpuInjectIrq;
                vcpu_read_reg(vcpu: Cap<cap_type::VCpu>, reg: VCpuReg) -> u64 = VCpuReadReg;
                vcpu_write_reg(vcpu: Cap<cap_type::VCpu>, reg: VCpuReg, value: u64) -> () = VCpuWriteReg;
                vcpu_ack_vppi(vcpu: Cap<cap_type::VCpu>, irq: u64) -> () = VCpuAckVppi;
                irq_control_get(control: Cap<cap_type::IrqControl>, irq: u64, edge_triggered: bool, dest: CNodeSlot) -> () = IrqControlGet;
                irq_handler_ack(handler: Cap<cap_type::IrqHandler>) -> () = IrqHandlerAck;
                irq_handler_set_notification(handler: Cap<cap_type::IrqHandler>, ntfn: Cap<cap_type::Notification>) -> () = IrqHandlerSetNotification;
            }
            infallible {
                call(ep: Cap<cap_type::Endpoint>, msg: &Message) -> Message = Call;
                send(ep: Cap<cap_type::Endpoint>, msg: &Message) -> () = Send;
                recv(ep: Cap<cap_type::Endpoint>) -> Received = Recv;
                reply(msg: &Message) -> () = Reply;
                reply_recv(ep: Cap<cap_type::Endpoint>, msg: &Message) -> Received = ReplyRecv;
                signal(ntfn: Cap<cap_type::Notification>) -> () = Signal;
                wait(ntfn: Cap<cap_type::Notification>) -> u64 = Wait;
                poll(ntfn: Cap<cap_type::Notification>) -> u64 = Poll;
                yield_now() -> () = Yield;
            }
        }
    };
}

macro_rules! impl_observed {
    (
        fallible { $( $f:ident($($fa:ident: $ft:ty),*) -> $fr:ty = $fop:ident; )* }
        infallible { $( $i:ident($($ia:ident: $it:ty),*) -> $ir:ty = $iop:ident; )* }
    ) => {
        impl<K: Kernel, O: Observer> Kernel for Observed<K, O> {
            $(
                fn $f(&mut self, $($fa: $ft),*) -> Result<$fr> {
                    self.observer.invocation(Op::$fop)?;
                    self.kernel.$f($($fa),*)
                }
            )*
            $(
                fn $i(&mut self, $($ia: $it),*) -> $ir {
                    self.observer.entry(Op::$iop);
                    self.kernel.$i($($ia),*)
                }
            )*
        }
    };
}

macro_rules! impl_borrowed {
    (
        fallible { $( $f:ident($($fa:ident: $ft:ty),*) -> $fr:ty = $fop:ident; )* }
        infallible { $( $i:ident($($ia:ident: $it:ty),*) -> $ir:ty = $iop:ident; )* }
    ) => {
        impl<K: Kernel + ?Sized> Kernel for &mut K {
            $(
                fn $f(&mut self, $($fa: $ft),*) -> Result<$fr> {
                    (**self).$f($($fa),*)
                }
            )*
            $(
                fn $i(&mut self, $($ia: $it),*) -> $ir {
                    (**self).$i($($ia),*)
                }
            )*
        }
    };
}

/// Lends a kernel handle for the length of one closure: the owner of a kernel that others
/// reach through static methods (a HAL's, in the root task) implements it, and [`Lent`] turns
/// it back into a [`Kernel`] that borrows the handle for each invocation only, so no caller
/// holds the handle (or the lock around it) between two invocations.
pub trait Lend {
    /// The kernel lent.
    type Kernel: Kernel;
    /// Runs `f` with the kernel. `f` must not reach the lender again (no nesting).
    fn with_kernel<R>(f: impl FnOnce(&mut Self::Kernel) -> R) -> R;
}

/// A [`Kernel`] that borrows `L`'s handle for each invocation. Zero-sized.
pub struct Lent<L>(core::marker::PhantomData<L>);

impl<L> Lent<L> {
    /// The handle.
    pub const fn new() -> Self {
        Lent(core::marker::PhantomData)
    }
}

impl<L> Default for Lent<L> {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! impl_lent {
    (
        fallible { $( $f:ident($($fa:ident: $ft:ty),*) -> $fr:ty = $fop:ident; )* }
        infallible { $( $i:ident($($ia:ident: $it:ty),*) -> $ir:ty = $iop:ident; )* }
    ) => {
        impl<L: Lend> Kernel for Lent<L> {
            $(
                fn $f(&mut self, $($fa: $ft),*) -> Result<$fr> {
                    L::with_kernel(|k| k.$f($($fa),*))
                }
            )*
            $(
                fn $i(&mut self, $($ia: $it),*) -> $ir {
                    L::with_kernel(|k| k.$i($($ia),*))
                }
            )*
        }
    };
}

kernel_methods!(impl_observed);
kernel_methods!(impl_borrowed);
kernel_methods!(impl_lent);

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel whose invocations all succeed and whose IPC returns empty messages: enough to
    /// see what the wrapper forwards.
    #[derive(Default)]
    struct Null {
        retypes: u64,
    }

    macro_rules! impl_null {
        (
            fallible { $( $f:ident($($fa:ident: $ft:ty),*) -> $fr:ty = $fop:ident; )* }
            infallible { $( $i:ident($($ia:ident: $it:ty),*) -> $ir:ty = $iop:ident; )* }
        ) => {
            impl Kernel for Null {
                $(
                    #[allow(unused_variables)]
                    fn $f(&mut self, $($fa: $ft),*) -> Result<$fr> {
                        if Op::$fop == Op::UntypedRetype {
                            self.retypes += 1;
                        }
                        Ok(Default::default())
                    }
                )*
                $(
                    #[allow(unused_variables)]
                    fn $i(&mut self, $($ia: $it),*) -> $ir {
                        null_value()
                    }
                )*
            }
        };
    }

    trait NullValue {
        fn null() -> Self;
    }
    impl NullValue for () {
        fn null() {}
    }
    impl NullValue for u64 {
        fn null() -> Self {
            0
        }
    }
    impl NullValue for Message {
        fn null() -> Self {
            Message::new(0, &[])
        }
    }
    impl NullValue for Received {
        fn null() -> Self {
            Received { badge: 0, msg: Message::new(0, &[]) }
        }
    }
    fn null_value<T: NullValue>() -> T {
        T::null()
    }

    kernel_methods!(impl_null);

    struct FailSecond(u64);
    impl Observer for FailSecond {
        fn entry(&mut self, _: Op) {}
        fn invocation(&mut self, _: Op) -> Result<()> {
            self.0 += 1;
            if self.0 == 2 { Err(crate::Error::NotEnoughMemory) } else { Ok(()) }
        }
    }

    #[test]
    fn counts_every_entry_by_kind() {
        let mut k = Observed::new(Null::default(), OpCounts::default());
        let ut = Slot::new(80).cap();
        k.untyped_retype(ut, ObjectBlueprint::Endpoint, Slot::new(200), 1).unwrap();
        k.untyped_retype(ut, ObjectBlueprint::Endpoint, Slot::new(201), 1).unwrap();
        let before = k.observer;
        k.cnode_delete(CNodeSlot::root(Slot::new(200))).unwrap();
        k.yield_now();
        k.recv(Slot::new(9).cap());
        assert_eq!(k.observer.get(Op::UntypedRetype), 2);
        assert_eq!(k.observer.total(), 5);
        let d = k.observer.since(&before);
        assert_eq!(d.nonzero().collect::<alloc_free::Vec3>(), [(Op::CNodeDelete, 1), (Op::Recv, 1), (Op::Yield, 1)]);
        assert_eq!(k.kernel.retypes, 2, "the invocations reached the kernel");
    }

    #[test]
    fn a_refused_invocation_is_not_made() {
        let mut k = Observed::new(Null::default(), FailSecond(0));
        let ut = Slot::new(80).cap();
        assert_eq!(k.untyped_retype(ut, ObjectBlueprint::Tcb, Slot::new(200), 1), Ok(()));
        assert_eq!(k.untyped_retype(ut, ObjectBlueprint::Tcb, Slot::new(201), 1), Err(crate::Error::NotEnoughMemory));
        assert_eq!(k.untyped_retype(ut, ObjectBlueprint::Tcb, Slot::new(202), 1), Ok(()));
        assert_eq!(k.kernel.retypes, 2);
    }

    #[test]
    fn a_borrowed_kernel_is_a_kernel() {
        let mut null = Null::default();
        let mut k = Observed::new(&mut null, OpCounts::default());
        k.untyped_retype(Slot::new(80).cap(), ObjectBlueprint::Tcb, Slot::new(200), 1).unwrap();
        assert_eq!(k.observer.get(Op::UntypedRetype), 1);
        assert_eq!(null.retypes, 1);
    }

    /// Collects up to three items without a heap (the crate's tests run without `alloc`).
    mod alloc_free {
        use crate::kernel::Op;

        #[derive(Debug, PartialEq)]
        pub struct Vec3(pub [(Op, u64); 3]);
        impl FromIterator<(Op, u64)> for Vec3 {
            fn from_iter<I: IntoIterator<Item = (Op, u64)>>(iter: I) -> Self {
                let mut out = [(Op::Yield, 0); 3];
                for (slot, item) in out.iter_mut().zip(iter) {
                    *slot = item;
                }
                Vec3(out)
            }
        }
        impl PartialEq<[(Op, u64); 3]> for Vec3 {
            fn eq(&self, other: &[(Op, u64); 3]) -> bool {
                self.0 == *other
            }
        }
    }
}
