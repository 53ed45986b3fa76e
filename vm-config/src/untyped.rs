//! The check only the target can make: does the kernel's untyped list actually hold the
//! host-physical memory the configuration claims?
//!
//! The host tool cannot know which physical ranges seL4 hands to the root task (the kernel
//! image, its boot allocations and the device tree's reserved regions are carved out at
//! boot), so the root task calls [`check_against_untyped`] with the bootinfo untyped list
//! before retyping anything for a VM.

use alloc::vec::Vec;
use core::fmt;

use sel4::UntypedDesc;

use crate::addr::GuestRange;
use crate::check::{Field, Part};
use crate::model::{MapType, SystemConfig};

/// A configured range the untyped list cannot back.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum UntypedProblem {
    /// Host-physical memory at a fixed address is not (entirely) inside untyped memory of
    /// the right kind.
    NotCovered {
        /// Index of the VM.
        vm: usize,
        /// The configuration entry.
        field: Field,
        /// The host-physical range.
        host: GuestRange,
        /// Whether device untyped was required (passthrough) rather than RAM.
        device: bool,
    },
    /// The VMs' `MAP_ALLOC` RAM exceeds the RAM untyped left after fixed-address regions.
    NotEnoughRam {
        /// Bytes the VMs need.
        needed: u64,
        /// RAM untyped bytes not claimed by fixed-address regions.
        available: u64,
    },
}

impl fmt::Display for UntypedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UntypedProblem::NotCovered { vm, field, host, device } => write!(
                f,
                "VM {vm}: {field}: host range {host} is not inside the kernel's {} untyped memory",
                if *device { "device" } else { "RAM" }
            ),
            UntypedProblem::NotEnoughRam { needed, available } => {
                write!(f, "VMs need {needed:#x} bytes of RAM, the kernel has {available:#x} bytes free")
            }
        }
    }
}

impl core::error::Error for UntypedProblem {}

/// Sorted, merged `[start, end)` intervals of the untyped memory of one kind.
fn merged(untypeds: &[UntypedDesc], device: bool) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> =
        untypeds.iter().filter(|u| u.is_device == device).map(|u| (u.paddr.0, u.end())).collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn covered(intervals: &[(u64, u64)], r: &GuestRange) -> bool {
    let Some(end) = r.end() else { return false };
    intervals.iter().any(|(s, e)| *s <= r.base.0 && end <= *e)
}

/// Checks every fixed-address host range of every VM against the untyped list, and the
/// total of allocated RAM against what is left.
///
/// Rules: `MAP_IDENTICAL` RAM must be RAM untyped (device untyped is never zeroed, so it
/// could leak a previous owner's data); `MAP_RESERVED` may be either kind (reserved regions
/// are handed out as device untyped); passthrough windows must be device untyped.
pub fn check_against_untyped(sys: &SystemConfig, untypeds: &[UntypedDesc]) -> Vec<UntypedProblem> {
    let ram = merged(untypeds, false);
    let dev = merged(untypeds, true);
    let mut out = Vec::new();
    let mut fixed_ram: u64 = 0;
    let mut alloc_ram: u64 = 0;
    for (i, vm) in sys.vms.iter().enumerate() {
        for (j, m) in vm.memory.iter().enumerate() {
            let field = Field::Memory(j, Part::Whole);
            match m.map {
                MapType::Alloc => alloc_ram = alloc_ram.saturating_add(m.range.size_bytes),
                MapType::Identical => {
                    if covered(&ram, &m.range) {
                        fixed_ram = fixed_ram.saturating_add(m.range.size_bytes);
                    } else {
                        out.push(UntypedProblem::NotCovered { vm: i, field, host: m.range, device: false });
                    }
                }
                MapType::Reserved => {
                    if covered(&ram, &m.range) {
                        fixed_ram = fixed_ram.saturating_add(m.range.size_bytes);
                    } else if !covered(&dev, &m.range) {
                        out.push(UntypedProblem::NotCovered { vm: i, field, host: m.range, device: false });
                    }
                }
            }
        }
        for (j, d) in vm.passthrough.iter().enumerate() {
            if let Some(r) = &d.region {
                let host = GuestRange::new(r.host.0, r.guest.size_bytes);
                if !covered(&dev, &host) {
                    out.push(UntypedProblem::NotCovered {
                        vm: i,
                        field: Field::Passthrough(j, Part::Element(2)),
                        host,
                        device: true,
                    });
                }
            }
        }
        for (j, r) in vm.passthrough_addresses.iter().enumerate() {
            if !covered(&dev, r) {
                out.push(UntypedProblem::NotCovered {
                    vm: i,
                    field: Field::PassthroughAddress(j, Part::Whole),
                    host: *r,
                    device: true,
                });
            }
        }
        if let Some(r) = &vm.capvisor.gic_cpu_interface {
            let host = GuestRange::new(r.host.0, r.guest.size_bytes);
            if !covered(&dev, &host) {
                out.push(UntypedProblem::NotCovered {
                    vm: i,
                    field: Field::Key("capvisor.gic_cpu_interface"),
                    host,
                    device: true,
                });
            }
        }
    }
    let total_ram = ram.iter().fold(0u64, |acc, (s, e)| acc.saturating_add(e - s));
    let available = total_ram.saturating_sub(fixed_ram);
    if alloc_ram > available {
        out.push(UntypedProblem::NotEnoughRam { needed: alloc_ram, available });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MemFlags, MemRegion, PassthroughDevice, PassthroughRegion, VmConfig};
    use alloc::vec;
    use sel4::PhysAddr;

    fn ut(paddr: u64, size_bits: u32, is_device: bool) -> UntypedDesc {
        UntypedDesc { paddr: PhysAddr(paddr), size_bits, is_device }
    }

    fn vm_with(memory: Vec<MemRegion>) -> VmConfig {
        let mut vm = VmConfig::minimal(1, "t", GuestRange::new(0x4000_0000, 0x1000), 0x4000_0000);
        vm.memory = memory;
        vm
    }

    fn region(base: u64, size: u64, map: MapType) -> MemRegion {
        MemRegion { range: GuestRange::new(base, size), flags: MemFlags(7), map }
    }

    #[test]
    fn identical_ram_may_span_adjacent_untypeds_but_not_a_gap() {
        let uts = [ut(0x4000_0000, 20, false), ut(0x4010_0000, 20, false), ut(0x4030_0000, 20, false)];
        let ok = SystemConfig { vms: vec![vm_with(vec![region(0x4000_0000, 0x20_0000, MapType::Identical)])] };
        assert_eq!(check_against_untyped(&ok, &uts), vec![]);
        let gap = SystemConfig { vms: vec![vm_with(vec![region(0x4010_0000, 0x30_0000, MapType::Identical)])] };
        assert_eq!(
            check_against_untyped(&gap, &uts),
            vec![UntypedProblem::NotCovered {
                vm: 0,
                field: Field::Memory(0, Part::Whole),
                host: GuestRange::new(0x4010_0000, 0x30_0000),
                device: false
            }]
        );
    }

    #[test]
    fn identical_ram_in_device_untyped_is_refused_but_reserved_is_not() {
        let uts = [ut(0x4000_0000, 20, true)];
        let id = SystemConfig { vms: vec![vm_with(vec![region(0x4000_0000, 0x1000, MapType::Identical)])] };
        assert_eq!(check_against_untyped(&id, &uts).len(), 1);
        let rs = SystemConfig { vms: vec![vm_with(vec![region(0x4000_0000, 0x1000, MapType::Reserved)])] };
        assert_eq!(check_against_untyped(&rs, &uts), vec![]);
    }

    #[test]
    fn passthrough_needs_device_untyped() {
        let mut vm = vm_with(vec![region(0x4000_0000, 0x1000, MapType::Alloc)]);
        vm.passthrough = vec![PassthroughDevice {
            name: "gicc".into(),
            region: Some(PassthroughRegion {
                guest: GuestRange::new(0x0801_0000, 0x2000),
                host: PhysAddr(0x0804_0000),
            }),
            irq: 0,
        }];
        vm.passthrough_addresses = vec![GuestRange::new(0x0900_0000, 0x1000)];
        let sys = SystemConfig { vms: vec![vm] };
        let good = [ut(0x4000_0000, 20, false), ut(0x0800_0000, 20, true), ut(0x0900_0000, 12, true)];
        assert_eq!(check_against_untyped(&sys, &good), vec![]);
        let ram_only = [ut(0x0000_0000, 31, false)];
        let problems = check_against_untyped(&sys, &ram_only);
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| matches!(p, UntypedProblem::NotCovered { device: true, .. })));
    }

    #[test]
    fn allocated_ram_is_counted_against_what_fixed_regions_leave() {
        let uts = [ut(0x4000_0000, 24, false)]; // 16 MiB
        let sys = SystemConfig {
            vms: vec![vm_with(vec![
                region(0x4000_0000, 0x80_0000, MapType::Identical), // 8 MiB fixed
                region(0x8000_0000, 0x90_0000, MapType::Alloc),     // 9 MiB wanted
            ])],
        };
        assert_eq!(
            check_against_untyped(&sys, &uts),
            vec![UntypedProblem::NotEnoughRam { needed: 0x90_0000, available: 0x80_0000 }]
        );
    }
}
