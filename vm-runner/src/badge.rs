//! The badge of a vCPU's fault endpoint capability: which VM and vCPU a fault came from.
//!
//! The root task mints each vCPU thread's fault endpoint with [`VcpuBadge::to_badge`]; the
//! VMM's endpoint also receives notifications (host interrupts, console input, timer
//! wake-ups) through a bound notification, whose badges never have bit 63 set, so bit 63
//! tells a fault from a signal without looking at the message.

/// Bit that marks a fault badge.
pub const FAULT_BADGE_BIT: u64 = 1 << 63;

/// Which vCPU a fault message is about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VcpuBadge {
    /// Index of the VM in the system configuration.
    pub vm: u8,
    /// Index of the vCPU in its VM.
    pub vcpu: u8,
}

impl VcpuBadge {
    /// The badge word to mint.
    pub const fn to_badge(self) -> u64 {
        FAULT_BADGE_BIT | ((self.vm as u64) << 8) | self.vcpu as u64
    }

    /// The vCPU a badge names, or `None` if the badge is not a fault badge (a notification's)
    /// or has bits set that [`VcpuBadge::to_badge`] never sets.
    pub const fn from_badge(badge: u64) -> Option<Self> {
        if badge & FAULT_BADGE_BIT == 0 || badge & !(FAULT_BADGE_BIT | 0xffff) != 0 {
            return None;
        }
        Some(VcpuBadge { vm: (badge >> 8) as u8, vcpu: badge as u8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_round_trip_and_foreign_badges_are_refused() {
        for vm in [0u8, 1, 255] {
            for vcpu in [0u8, 7, 255] {
                let b = VcpuBadge { vm, vcpu };
                assert_eq!(VcpuBadge::from_badge(b.to_badge()), Some(b));
            }
        }
        assert_eq!(VcpuBadge::from_badge(0), None);
        assert_eq!(VcpuBadge::from_badge(0x1), None, "a notification badge");
        assert_eq!(VcpuBadge::from_badge(FAULT_BADGE_BIT | 0x1_0000), None, "stray bits");
    }
}
