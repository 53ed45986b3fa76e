//! Device models: each plain state plus functions, no system calls, no kernel types. The VM
//! ([`crate::vm::VmState`]) routes guest accesses and events to them and turns what they say
//! into [`crate::action::Action`]s.

pub mod cfi_flash;
pub mod pl011;
pub mod pl031;
// AArch64's own devices live in `crate::arch::aarch64`; named here with the others.
pub use crate::arch::aarch64::{psci, vgic, vtimer};

/// What ARM PrimeCell peripherals (the PL011, the PL031) share: the ID registers at the top
/// of their 4 KiB window and 32-bit registers read in part.
pub mod primecell {
    /// Offset of `PeriphID0`; `PeriphID0`-`3` and `PCellID0`-`3` follow, a byte per word.
    pub const ID_BASE: u64 = 0xfe0;

    /// The ID register at word-aligned `offset`, if it is one: byte `i` of `ids` for
    /// `ID_BASE + 4 * i`.
    pub fn id_register(ids: &[u8; 8], offset: u64) -> Option<u32> {
        let i = usize::try_from(offset.checked_sub(ID_BASE)? / 4).ok()?;
        ids.get(i).map(|b| u32::from(*b))
    }

    /// What a `size`-byte read at `offset` returns of the 32-bit register `value` holding it:
    /// the addressed bytes, shifted down.
    pub fn read_part(value: u32, offset: u64, size: u8) -> u64 {
        let shift = (offset & 3) * 8;
        let mask = if size >= 4 { u64::from(u32::MAX) } else { (1u64 << (u32::from(size) * 8)) - 1 };
        (u64::from(value) >> shift) & mask
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn ids_and_partial_reads() {
            let ids = [1, 2, 3, 4, 5, 6, 7, 8];
            assert_eq!(id_register(&ids, ID_BASE), Some(1));
            assert_eq!(id_register(&ids, ID_BASE + 28), Some(8));
            assert_eq!(id_register(&ids, ID_BASE + 32), None);
            assert_eq!(id_register(&ids, 0), None);
            assert_eq!(read_part(0x1122_3344, 1, 1), 0x33);
            assert_eq!(read_part(0x1122_3344, 2, 2), 0x1122);
            assert_eq!(read_part(0x1122_3344, 0, 8), 0x1122_3344);
        }
    }
}
