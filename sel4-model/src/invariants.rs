//! `Model::check_invariants`: the properties the kernel maintains (and its proofs rely on),
//! checked over the whole model state. Tests call it after every step they care about.
//!
//! Reads everything, changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use sel4::object::MIN_UNTYPED_BITS;

use crate::Model;
use crate::caps::{ModelCap, mask};
use crate::objects::{Container, IrqState, Pte, SlotRef, TCB_CTABLE};
use crate::vspace::UPT_LEVELS;

/// An object's identity for overlap checks: kind, base, log2 size.
type ObjKey = (&'static str, u64, u32);

impl Model {
    /// Checks the model's invariants; `Err` lists every violation found.
    ///
    /// - the mapping database is one well-formed doubly linked list per component, every link
    ///   names a live slot, every slot lies inside a live container;
    /// - no two live objects overlap in physical memory, except an untyped and what lies
    ///   inside it (and nested untyped);
    /// - every cap below an untyped in the database lies inside that untyped, below its
    ///   watermark; every object not made at boot lies inside some untyped cap's region;
    /// - object state and caps agree: each stored object has a cap, each cap's object state
    ///   exists; bindings (TCB and notification, TCB and VCPU) are symmetric;
    /// - ASIDs name live VSpaces, tables reachable from them are live, and every frame
    ///   mapping reachable through an ASID is claimed by a frame cap at that address;
    /// - an IRQ is in the signal state exactly when a handler cap for it exists.
    pub fn check_invariants(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        self.check_mdb(&mut errs);
        self.check_memory(&mut errs);
        self.check_objects(&mut errs);
        self.check_vspaces(&mut errs);
        self.check_irqs(&mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    fn check_mdb(&self, errs: &mut Vec<String>) {
        for (s, c) in &self.ctes {
            match self.node_slots(s.node) {
                Some(n) if s.index < n => {}
                _ => errs.push(format!("slot {s:?} lies outside any live container")),
            }
            if c.cap.is_null() {
                errs.push(format!("slot {s:?} stored with a null cap"));
            }
            if let ModelCap::Zombie { .. } = c.cap {
                errs.push(format!("slot {s:?} left holding a zombie"));
            }
            if let Some(n) = c.next {
                match self.ctes.get(&n) {
                    Some(nc) if nc.prev == Some(*s) => {}
                    _ => errs.push(format!("slot {s:?}: next {n:?} does not point back")),
                }
            }
            if let Some(p) = c.prev {
                match self.ctes.get(&p) {
                    Some(pc) if pc.next == Some(*s) => {}
                    _ => errs.push(format!("slot {s:?}: prev {p:?} does not point back")),
                }
            }
        }
        // No cycles: walking forward from each head visits every slot once.
        let mut seen = BTreeSet::new();
        for (s, c) in &self.ctes {
            if c.prev.is_some() {
                continue;
            }
            let mut cur = Some(*s);
            while let Some(x) = cur {
                if !seen.insert(x) {
                    errs.push(format!("MDB cycle through {x:?}"));
                    break;
                }
                cur = self.ctes.get(&x).and_then(|c| c.next);
            }
        }
        if seen.len() != self.ctes.len() {
            errs.push(format!("{} slots are not reachable from any MDB head", self.ctes.len() - seen.len()));
        }
    }

    fn check_memory(&self, errs: &mut Vec<String>) {
        // Distinct objects (untyped excluded), and untyped regions.
        let mut objects: BTreeMap<ObjKey, SlotRef> = BTreeMap::new();
        let mut untyped: Vec<(u64, u32, u64, SlotRef)> = Vec::new();
        for (s, c) in &self.ctes {
            match c.cap {
                ModelCap::Untyped { paddr, size_bits, free_index, .. } => {
                    if free_index << MIN_UNTYPED_BITS > 1u64 << size_bits {
                        errs.push(format!("untyped in {s:?}: watermark past its end"));
                    }
                    untyped.push((paddr.0, size_bits, free_index << MIN_UNTYPED_BITS, *s));
                }
                cap => {
                    if let Some((base, bits)) = cap.region() {
                        if crate::untyped::pptr(base) & mask(bits) != 0 {
                            errs.push(format!("{} in {s:?} at {base:#x} not aligned to 2^{bits}", cap.kind()));
                        }
                        objects.entry((cap.kind(), base, bits)).or_insert(*s);
                    }
                }
            }
        }
        // Distinct objects never overlap.
        let list: Vec<(&ObjKey, &SlotRef)> = objects.iter().collect();
        let mut by_base: Vec<(u64, u64, &ObjKey)> = list.iter().map(|(k, _)| (k.1, k.1 + (1u64 << k.2), *k)).collect();
        by_base.sort();
        for w in by_base.windows(2) {
            if w[1].0 < w[0].1 {
                errs.push(format!("objects overlap: {:?} and {:?}", w[0].2, w[1].2));
            }
        }
        // Untyped: nested or disjoint; identical copies allowed.
        let mut ut = untyped.clone();
        ut.sort_by_key(|u| (u.0, std::cmp::Reverse(u.1)));
        for (i, a) in ut.iter().enumerate() {
            let a_end = a.0 + (1u64 << a.1);
            for b in &ut[i + 1..] {
                if b.0 >= a_end {
                    break;
                }
                let b_end = b.0 + (1u64 << b.1);
                if b_end > a_end {
                    errs.push(format!("untyped {:?} and {:?} overlap without nesting", a.3, b.3));
                }
            }
        }
        // Every object lies in some untyped or is a boot object.
        for (k, s) in &objects {
            let (base, end) = (k.1, k.1 + (1u64 << k.2));
            let in_untyped = untyped.iter().any(|u| u.0 <= base && end <= u.0 + (1u64 << u.1));
            let boot = self.boot_objects.iter().any(|b| b.0 <= base && end <= b.0 + (1u64 << b.1));
            if !in_untyped && !boot {
                errs.push(format!("{} at {base:#x} (in {s:?}) lies in no untyped", k.0));
            }
        }
        // Descendants of an untyped lie inside it, below its watermark.
        for &(base, _bits, watermark, s) in &untyped {
            let mut cur = self.ctes[&s].next;
            while let Some(c) = cur {
                if !self.is_mdb_parent_of(s, c) {
                    break;
                }
                if let Some((b, bits)) = self.ctes[&c].cap.region()
                    && (b < base || b + (1u64 << bits) > base + watermark)
                {
                    errs.push(format!(
                        "{} in {c:?} at {b:#x} descends from the untyped in {s:?} but lies outside [{base:#x}, +{watermark:#x})",
                        self.ctes[&c].cap.kind()
                    ));
                }
                cur = self.ctes[&c].next;
            }
        }
    }

    fn check_objects(&self, errs: &mut Vec<String>) {
        let mut with_caps: BTreeMap<&'static str, BTreeSet<u64>> = BTreeMap::new();
        for c in self.ctes.values() {
            if let Some((base, _)) = c.cap.region() {
                with_caps.entry(c.cap.kind()).or_default().insert(base);
            }
        }
        let has = |kind: &str, base: &u64| with_caps.get(kind).is_some_and(|s| s.contains(base));
        let stores: [(&str, Vec<&u64>); 6] = [
            ("TCB", self.tcbs.keys().collect()),
            ("endpoint", self.endpoints.keys().collect()),
            ("notification", self.ntfns.keys().collect()),
            ("CNode", self.cnodes.keys().collect()),
            ("ASID pool", self.asid_pools.keys().collect()),
            ("VCPU", self.vcpus.keys().collect()),
        ];
        for (kind, keys) in &stores {
            for base in keys {
                if !has(kind, base) {
                    errs.push(format!("{kind} at {base:#x} has state but no cap"));
                }
            }
        }
        for (base, t) in &self.tables {
            let kind = if t.is_vspace { "VSpace" } else { "page table" };
            if !has(kind, base) {
                errs.push(format!("{kind} at {base:#x} has state but no cap"));
            }
        }
        for (s, c) in &self.ctes {
            let missing = match c.cap {
                ModelCap::Tcb { paddr } => !self.tcbs.contains_key(&paddr.0),
                ModelCap::Endpoint { paddr, .. } => !self.endpoints.contains_key(&paddr.0),
                ModelCap::Notification { paddr, .. } => !self.ntfns.contains_key(&paddr.0),
                ModelCap::CNode { paddr, radix, .. } => self.cnodes.get(&paddr.0) != Some(&radix),
                ModelCap::AsidPool { paddr, .. } => !self.asid_pools.contains_key(&paddr.0),
                ModelCap::VCpu { paddr } => !self.vcpus.contains_key(&paddr.0),
                ModelCap::PageTable { paddr, .. } => self.tables.get(&paddr.0).is_none_or(|t| t.is_vspace),
                ModelCap::VSpace { paddr, .. } => self.tables.get(&paddr.0).is_none_or(|t| !t.is_vspace),
                _ => false,
            };
            if missing {
                errs.push(format!("{} cap in {s:?} names no live object of that kind", c.cap.kind()));
            }
        }
        for (t, tcb) in &self.tcbs {
            if let Some(n) = tcb.bound_ntfn
                && self.ntfns.get(&n).and_then(|x| x.bound_tcb) != Some(*t)
            {
                errs.push(format!("TCB {t:#x} bound to notification {n:#x}, which does not point back"));
            }
            if let Some(v) = tcb.vcpu
                && self.vcpus.get(&v).and_then(|x| x.tcb) != Some(*t)
            {
                errs.push(format!("TCB {t:#x} bound to VCPU {v:#x}, which does not point back"));
            }
        }
        for (n, ntfn) in &self.ntfns {
            if let Some(t) = ntfn.bound_tcb
                && self.tcbs.get(&t).and_then(|x| x.bound_ntfn) != Some(*n)
            {
                errs.push(format!("notification {n:#x} bound to TCB {t:#x}, which does not point back"));
            }
        }
        for (v, vcpu) in &self.vcpus {
            if let Some(t) = vcpu.tcb
                && self.tcbs.get(&t).and_then(|x| x.vcpu) != Some(*v)
            {
                errs.push(format!("VCPU {v:#x} bound to TCB {t:#x}, which does not point back"));
            }
        }
        if !matches!(self.cap_at(SlotRef::tcb(self.root_tcb, TCB_CTABLE)), ModelCap::CNode { .. }) {
            errs.push("the root task's CSpace root is gone".to_string());
        }
    }

    fn check_vspaces(&self, errs: &mut Vec<String>) {
        // Frame caps by (asid, vaddr).
        let mut claims: BTreeSet<(u16, u64, u64)> = BTreeSet::new();
        for c in self.ctes.values() {
            if let ModelCap::Frame { paddr, mapped: Some(m), .. } = c.cap {
                claims.insert((m.asid, m.vaddr.0, paddr.0));
            }
        }
        for (high, pool) in self.asid_table.iter().enumerate() {
            let Some(pool) = pool else { continue };
            let Some(p) = self.asid_pools.get(pool) else {
                errs.push(format!("ASID table entry {high} names no live pool"));
                continue;
            };
            for (low, vs) in &p.entries {
                let asid = ((high as u16) << crate::vspace::ASID_LOW_BITS) | low;
                match self.tables.get(vs) {
                    Some(t) if t.is_vspace => self.check_table(*vs, UPT_LEVELS - 1, 0, asid, &claims, errs),
                    _ => errs.push(format!("ASID {asid} names {vs:#x}, not a live VSpace")),
                }
            }
        }
    }

    fn check_table(
        &self,
        table: u64,
        level: u32,
        base: u64,
        asid: u16,
        claims: &BTreeSet<(u16, u64, u64)>,
        errs: &mut Vec<String>,
    ) {
        let bits = sel4::object::PAGE_TABLE_INDEX_BITS * level + sel4::object::PAGE_BITS;
        for (idx, pte) in &self.tables[&table].entries {
            let vaddr = base + (idx << bits);
            match *pte {
                Pte::Table(next) => match self.tables.get(&next) {
                    Some(t) if !t.is_vspace && level > 0 => {
                        self.check_table(next, level - 1, vaddr, asid, claims, errs)
                    }
                    _ => errs.push(format!("ASID {asid}: entry for {vaddr:#x} names {next:#x}, not a live table")),
                },
                Pte::Page { paddr, size, .. } => {
                    if size.size_bits() != bits {
                        errs.push(format!("ASID {asid}: {size:?} frame in a slot mapping 2^{bits} bytes"));
                    }
                    if !claims.contains(&(asid, vaddr, paddr)) {
                        errs.push(format!("ASID {asid}: frame {paddr:#x} at {vaddr:#x} is claimed by no frame cap"));
                    }
                }
            }
        }
    }

    fn check_irqs(&self, errs: &mut Vec<String>) {
        let mut handled = BTreeSet::new();
        for (s, c) in &self.ctes {
            if let ModelCap::IrqHandler { irq } = c.cap {
                handled.insert(irq);
            }
            if s.node == Container::IrqNode && !matches!(c.cap, ModelCap::Notification { .. }) {
                errs.push(format!("IRQ node slot {} holds a {} cap", s.index, c.cap.kind()));
            }
        }
        for (irq, st) in self.irq_state.iter().enumerate() {
            let has = handled.contains(&(irq as u64));
            if (*st == IrqState::Signal) != has {
                errs.push(format!("IRQ {irq}: state {st:?} but handler caps exist: {has}"));
            }
        }
    }
}
