//! The guest's virtual timer, as seL4 presents it: when the timer of a running vCPU fires,
//! the kernel masks its PPI (27) and sends a `VPPIEvent`; the PPI stays masked until the VMM
//! acknowledges it (`seL4_ARM_VCPU_AckVPPI`). The VMM injects the PPI and acknowledges it
//! when the guest EOIs it: by then the guest has re-armed or stopped its timer, so
//! unmasking cannot raise the same expiry twice, and a timer still asserted fires again.
//!
//! Owns one flag per vCPU (a PPI masked by the kernel, awaiting acknowledgement); injection
//! itself is the distributor's business.

use alloc::vec;
use alloc::vec::Vec;

pub use super::vgic::VTIMER_PPI;

/// Per-vCPU state of the virtual timer PPI.
#[derive(Clone, Debug)]
pub struct VTimer {
    masked: Vec<bool>,
}

impl VTimer {
    /// State for `cpus` vCPUs, none masked.
    pub fn new(cpus: usize) -> Self {
        VTimer { masked: vec![false; cpus] }
    }

    /// A `VPPIEvent` for `irq` on `vcpu`: the kernel has masked it. Returns whether it is the
    /// timer's PPI of an existing vCPU (anything else is not this device's).
    pub fn on_event(&mut self, vcpu: usize, irq: u64) -> bool {
        match self.masked.get_mut(vcpu) {
            Some(m) if irq == u64::from(VTIMER_PPI) => {
                *m = true;
                true
            }
            _ => false,
        }
    }

    /// The guest EOIed `virq` on `vcpu`. Returns whether the VMM must now acknowledge the
    /// PPI to the kernel (once per event).
    pub fn on_eoi(&mut self, vcpu: usize, virq: u16) -> bool {
        match self.masked.get_mut(vcpu) {
            Some(m) if virq == VTIMER_PPI && *m => {
                *m = false;
                true
            }
            _ => false,
        }
    }

    /// Whether the kernel holds the PPI of `vcpu` masked, waiting for an acknowledgement.
    pub fn is_masked(&self, vcpu: usize) -> bool {
        self.masked.get(vcpu).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_acknowledgement_per_event_per_vcpu() {
        let mut t = VTimer::new(2);
        assert!(!t.on_eoi(0, 27), "no event yet");
        assert!(t.on_event(1, 27));
        assert!(t.is_masked(1) && !t.is_masked(0));
        assert!(!t.on_eoi(0, 27), "other vCPU");
        assert!(!t.on_eoi(1, 30), "other interrupt");
        assert!(t.on_eoi(1, 27));
        assert!(!t.on_eoi(1, 27), "already acknowledged");
        assert!(!t.on_event(1, 26), "not the virtual timer");
        assert!(!t.on_event(2, 27), "no such vCPU");
        assert!(!t.is_masked(7));
    }
}
