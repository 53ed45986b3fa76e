//! `Untyped_Retype`: decode in the kernel's order of checks, reset of an untyped with no
//! children (the watermark goes back to its base and the memory is cleared), and object
//! creation (`decodeUntypedInvocation`, `invokeUntyped_Retype`, `resetUntypedCap`,
//! `createNewObjects` in seL4 16.0.0).
//!
//! Owns the untyped watermark (`capFreeIndex`) and object birth; object death is
//! finalisation, in `cspace`.

use sel4::generated::{object_bits, object_type};
use sel4::object::{FrameSize, MAX_UNTYPED_BITS, MIN_UNTYPED_BITS};
use sel4::{Error, PhysAddr, config};

use crate::Model;
use crate::caps::{ModelCap, VmRights, mask};
use crate::objects::{EndpointObj, NtfnObj, SlotRef, TcbObj, VCpuObj};

/// Arguments of `seL4_Untyped_Retype` after the untyped itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetypeArgs {
    pub new_type: u64,
    pub user_size: u64,
    /// Extra cap 0: the CSpace root the destination is resolved from.
    pub root: ModelCap,
    pub node_index: u64,
    pub node_depth: u64,
    pub node_offset: u64,
    pub node_window: u64,
}

/// `getObjectSize`, wrapping as the kernel's word arithmetic does.
fn object_size(t: u64, user_size: u64) -> u64 {
    match t {
        object_type::UNTYPED => user_size,
        object_type::TCB => object_bits::TCB as u64,
        object_type::ENDPOINT => object_bits::ENDPOINT as u64,
        object_type::NOTIFICATION => object_bits::NOTIFICATION as u64,
        object_type::CAP_TABLE => (object_bits::SLOT as u64).wrapping_add(user_size),
        object_type::SMALL_PAGE => object_bits::PAGE as u64,
        object_type::LARGE_PAGE => object_bits::LARGE_PAGE as u64,
        object_type::HUGE_PAGE => object_bits::HUGE_PAGE as u64,
        object_type::PAGE_TABLE => object_bits::PAGE_TABLE as u64,
        object_type::VSPACE => object_bits::VSPACE as u64,
        object_type::VCPU => object_bits::VCPU as u64,
        _ => unreachable!("object type checked by the caller"),
    }
}

/// Offset of the kernel's physical memory window (`PPTR_BASE - PADDR_BASE`): 2^39 at EL2.
const PPTR_OFFSET: u64 = if config::ARM_HYPERVISOR_SUPPORT { 0x0000_0080_0000_0000 } else { 0xffff_ff80_0000_0000 };

/// `paddr_to_pptr`: untyped and object alignment hold for these addresses, not for physical
/// ones (a device untyped of 2^40 bytes at physical 2^39 is aligned in the window).
pub(crate) const fn pptr(paddr: u64) -> u64 {
    paddr.wrapping_add(PPTR_OFFSET)
}

/// `pptr_to_paddr`.
const fn paddr_of(pptr: u64) -> u64 {
    pptr.wrapping_sub(PPTR_OFFSET)
}

fn is_frame_type(t: u64) -> bool {
    matches!(t, object_type::SMALL_PAGE | object_type::LARGE_PAGE | object_type::HUGE_PAGE)
}

impl Model {
    /// `decodeUntypedInvocation` + `invokeUntyped_Retype` on the untyped cap in `slot`.
    pub(crate) fn decode_untyped_retype(&mut self, slot: SlotRef, a: RetypeArgs) -> Result<(), Error> {
        if a.new_type >= object_type::COUNT {
            return Err(Error::InvalidArgument);
        }
        let obj_size = object_size(a.new_type, a.user_size);
        if a.user_size >= 64 || obj_size > MAX_UNTYPED_BITS as u64 {
            return Err(Error::RangeError);
        }
        if a.new_type == object_type::CAP_TABLE && a.user_size == 0 {
            return Err(Error::InvalidArgument);
        }
        if a.new_type == object_type::UNTYPED && a.user_size < MIN_UNTYPED_BITS as u64 {
            return Err(Error::InvalidArgument);
        }
        let node_cap = if a.node_depth == 0 {
            a.root
        } else {
            let s = self.lookup_slot_for_cnode_op(a.root, a.node_index, a.node_depth)?;
            self.cap_at(s)
        };
        let ModelCap::CNode { paddr: cnode, radix, .. } = node_cap else {
            return Err(Error::FailedLookup);
        };
        let node_size = 1u64 << radix;
        if a.node_offset > node_size - 1 {
            return Err(Error::RangeError);
        }
        if a.node_window < 1 || a.node_window > config::RETYPE_FAN_OUT_LIMIT {
            return Err(Error::RangeError);
        }
        if a.node_window > node_size - a.node_offset {
            return Err(Error::RangeError);
        }
        for i in a.node_offset..a.node_offset + a.node_window {
            self.ensure_empty(SlotRef::cnode(cnode.0, i))?;
        }
        let ModelCap::Untyped { paddr, size_bits, free_index, device } = self.cap_at(slot) else {
            unreachable!("retype on a non-untyped cap")
        };
        // With no children the untyped starts over from its base, whatever the cap says.
        let (free_index, reset) = if self.has_children(slot) { (free_index, false) } else { (0, true) };
        // The kernel computes in its window's virtual addresses, where the untyped is aligned.
        let free_ref = pptr(paddr.0) + (free_index << MIN_UNTYPED_BITS);
        let free_bytes = (1u64 << size_bits) - (free_index << MIN_UNTYPED_BITS);
        if (free_bytes >> obj_size) < a.node_window {
            return Err(Error::NotEnoughMemory);
        }
        if device && !is_frame_type(a.new_type) && a.new_type != object_type::UNTYPED {
            return Err(Error::InvalidArgument);
        }
        let aligned = (free_ref + mask(obj_size as u32)) & !mask(obj_size as u32);

        // invokeUntyped_Retype
        if reset {
            self.reset_untyped(slot);
        }
        let end = aligned + (a.node_window << obj_size);
        let free_index = (end - pptr(paddr.0)) >> MIN_UNTYPED_BITS;
        self.set_cap(slot, ModelCap::Untyped { paddr, size_bits, free_index, device });
        for i in 0..a.node_window {
            let base = paddr_of(aligned + (i << obj_size));
            let cap = self.create_object(a.new_type, base, a.user_size, device);
            // insertNewCap puts each cap right after the parent: the last created comes first.
            self.insert_new_cap(slot, SlotRef::cnode(cnode.0, a.node_offset + i), cap);
        }
        Ok(())
    }

    /// `resetUntypedCap`: clear what the watermark covered (device memory is not cleared)
    /// and move the watermark to the base.
    fn reset_untyped(&mut self, slot: SlotRef) {
        let ModelCap::Untyped { paddr, size_bits, free_index, device } = self.cap_at(slot) else {
            unreachable!("reset of a non-untyped cap")
        };
        let offset = free_index << MIN_UNTYPED_BITS;
        if offset == 0 {
            return;
        }
        let chunk = config::RESET_CHUNK_BITS as u32;
        if !device {
            // Small untyped are cleared whole; larger ones in chunks from the watermark down.
            self.counters.bytes_zeroed +=
                if size_bits < chunk { 1 << size_bits } else { ((offset - 1) & !mask(chunk)) + (1 << chunk) };
        }
        self.counters.untyped_resets += 1;
        self.set_cap(slot, ModelCap::Untyped { paddr, size_bits, free_index: 0, device });
    }

    /// `createObject`: a fresh object at `base` and the cap to it.
    fn create_object(&mut self, t: u64, base: u64, user_size: u64, device: bool) -> ModelCap {
        let paddr = PhysAddr(base);
        let frame = |size| ModelCap::Frame { paddr, size, device, rights: VmRights::ReadWrite, mapped: None };
        match t {
            object_type::UNTYPED => ModelCap::Untyped { paddr, size_bits: user_size as u32, free_index: 0, device },
            object_type::TCB => {
                self.tcbs.insert(base, TcbObj::new());
                ModelCap::Tcb { paddr }
            }
            object_type::ENDPOINT => {
                self.endpoints.insert(base, EndpointObj::default());
                ModelCap::Endpoint { paddr, badge: 0, send: true, recv: true, grant: true, grant_reply: true }
            }
            object_type::NOTIFICATION => {
                self.ntfns.insert(base, NtfnObj::default());
                ModelCap::Notification { paddr, badge: 0, send: true, recv: true }
            }
            object_type::CAP_TABLE => {
                self.cnodes.insert(base, user_size as u32);
                ModelCap::CNode { paddr, radix: user_size as u32, guard_size: 0, guard: 0 }
            }
            object_type::SMALL_PAGE => frame(FrameSize::Small),
            object_type::LARGE_PAGE => frame(FrameSize::Large),
            object_type::HUGE_PAGE => frame(FrameSize::Huge),
            object_type::PAGE_TABLE => {
                self.new_table(base, false);
                ModelCap::PageTable { paddr, mapped: None }
            }
            object_type::VSPACE => {
                self.new_table(base, true);
                ModelCap::VSpace { paddr, asid: None }
            }
            object_type::VCPU => {
                self.vcpus.insert(base, VCpuObj::new(self.platform.gic_list_regs as usize));
                ModelCap::VCpu { paddr }
            }
            _ => unreachable!("object type checked by decode"),
        }
    }
}
