//! A small byte encoding of [`SystemConfig`], for the root task to embed.
//!
//! Hand-written rather than derived so that the decoder is obviously total: every read checks
//! the bytes left, every count is bounded by the bytes left before anything is allocated,
//! every enum value is checked, strings must be UTF-8, and trailing bytes are an error. The
//! root task then runs [`crate::check::check_system`] on the result ([`load_system`] does
//! both), so bytes that did not come from the host tool meet the same rules.
//!
//! Layout: `b"CVCF"`, version (u16), number of VMs (u16), the VMs. Integers are little
//! endian; a string or list is a u16 count then its items; an option is a 0/1 byte then the
//! value.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sel4::PhysAddr;

use crate::addr::{GuestPhysAddr, GuestRange};
use crate::check::{Problem, check_system};
use crate::model::{
    CapvisorOptions, EmulatedDevice, EmulatedKind, FlashImage, Image, InterruptMode, MapType, MemFlags, MemRegion,
    OnReset, PassthroughDevice, PassthroughRegion, PopulateRam, SystemConfig, UnhandledMmio, VmConfig,
};

/// First bytes of an encoded system.
pub const MAGIC: [u8; 4] = *b"CVCF";
/// Encoding version; bumped on any layout change.
pub const VERSION: u16 = 5;

/// Why bytes do not decode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// Not an encoded system (magic).
    BadMagic,
    /// Encoded by a different layout version.
    BadVersion(u16),
    /// The bytes end inside a value that starts at this offset.
    Truncated {
        /// Offset of the value.
        offset: usize,
    },
    /// A value that no encoder writes (enum tag, option tag, non-UTF-8 string).
    BadValue {
        /// Offset of the value.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A list or string longer than a u16 count (encoding only).
    TooLong(&'static str),
    /// Bytes left after the last VM.
    TrailingBytes {
        /// Offset of the first one.
        offset: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic => f.write_str("not an encoded capvisor configuration (bad magic)"),
            DecodeError::BadVersion(v) => write!(f, "encoding version {v}, this build reads {VERSION}"),
            DecodeError::Truncated { offset } => write!(f, "truncated at byte {offset}"),
            DecodeError::BadValue { offset, what } => write!(f, "bad {what} at byte {offset}"),
            DecodeError::TooLong(what) => write!(f, "{what} has more than 65535 entries"),
            DecodeError::TrailingBytes { offset } => write!(f, "trailing bytes from byte {offset}"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why embedded configuration bytes are not usable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LoadError {
    /// They do not decode.
    Decode(DecodeError),
    /// They decode to a configuration that breaks the rules.
    Invalid(Vec<Problem>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Decode(e) => write!(f, "{e}"),
            LoadError::Invalid(ps) => {
                write!(f, "{} problem(s)", ps.len())?;
                for p in ps {
                    write!(f, "; VM {}: {p}", p.vm)?;
                }
                Ok(())
            }
        }
    }
}

impl core::error::Error for LoadError {}

/// Decodes and checks embedded configuration bytes: what the root task calls.
pub fn load_system(bytes: &[u8]) -> Result<SystemConfig, LoadError> {
    let sys = decode_system(bytes).map_err(LoadError::Decode)?;
    let problems = check_system(&sys);
    if problems.is_empty() { Ok(sys) } else { Err(LoadError::Invalid(problems)) }
}

// ---- encoding ----

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn count(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        let n = u16::try_from(n).map_err(|_| DecodeError::TooLong(what))?;
        self.u16(n);
        Ok(())
    }
    fn str(&mut self, s: &str, what: &'static str) -> Result<(), DecodeError> {
        self.count(s.len(), what)?;
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn range(&mut self, r: &GuestRange) {
        self.u64(r.base.0);
        self.u64(r.size_bytes);
    }
    fn image(&mut self, i: &Image) -> Result<(), DecodeError> {
        self.str(&i.path, "image path")?;
        self.u64(i.load_addr.0);
        Ok(())
    }
    fn opt_image(&mut self, i: &Option<Image>) -> Result<(), DecodeError> {
        match i {
            None => self.u8(0),
            Some(i) => {
                self.u8(1);
                self.image(i)?;
            }
        }
        Ok(())
    }
}

/// Encodes a system. Fails only if a string or list exceeds 65535 entries.
pub fn encode_system(sys: &SystemConfig) -> Result<Vec<u8>, DecodeError> {
    let mut w = Writer(Vec::new());
    w.0.extend_from_slice(&MAGIC);
    w.u16(VERSION);
    w.count(sys.vms.len(), "VM list")?;
    for vm in &sys.vms {
        encode_vm(&mut w, vm)?;
    }
    Ok(w.0)
}

fn encode_vm(w: &mut Writer, vm: &VmConfig) -> Result<(), DecodeError> {
    w.u32(vm.id);
    w.str(&vm.name, "name")?;
    w.u8(vm.vm_type);
    w.u8(vm.cpu_num);
    w.count(vm.phys_cpu_ids.len(), "phys_cpu_ids")?;
    for id in &vm.phys_cpu_ids {
        w.u64(*id);
    }
    w.u64(vm.entry_point.0);
    w.image(&vm.kernel)?;
    w.opt_image(&vm.dtb)?;
    w.opt_image(&vm.ramdisk)?;
    match &vm.cmdline {
        None => w.u8(0),
        Some(c) => {
            w.u8(1);
            w.str(c, "cmdline")?;
        }
    }
    w.count(vm.memory.len(), "memory_regions")?;
    for m in &vm.memory {
        w.range(&m.range);
        w.u8(m.flags.0);
        w.u8(m.map as u8);
    }
    w.u8(vm.interrupt_mode as u8);
    w.count(vm.emulated.len(), "emu_devices")?;
    for d in &vm.emulated {
        w.str(&d.name, "device name")?;
        w.range(&d.range);
        w.u32(d.irq);
        w.u8(d.kind as u8);
        w.count(d.cfg.len(), "cfg_list")?;
        for c in &d.cfg {
            w.u64(*c);
        }
    }
    w.count(vm.passthrough.len(), "passthrough_devices")?;
    for d in &vm.passthrough {
        w.str(&d.name, "device name")?;
        match &d.region {
            None => w.u8(0),
            Some(r) => {
                w.u8(1);
                w.range(&r.guest);
                w.u64(r.host.0);
            }
        }
        w.u32(d.irq);
    }
    w.count(vm.passthrough_addresses.len(), "passthrough_addresses")?;
    for r in &vm.passthrough_addresses {
        w.range(r);
    }
    w.count(vm.excluded_devices.len(), "excluded_devices")?;
    for e in &vm.excluded_devices {
        w.str(e, "excluded device")?;
    }
    w.u8(vm.capvisor.unhandled_mmio as u8);
    w.u16(vm.capvisor.gic_irq_lines);
    w.u8(vm.capvisor.vcpu_priority);
    match &vm.capvisor.gic_cpu_interface {
        None => w.u8(0),
        Some(r) => {
            w.u8(1);
            w.range(&r.guest);
            w.u64(r.host.0);
        }
    }
    w.u8(vm.capvisor.populate_ram as u8);
    w.u8(vm.capvisor.on_reset as u8);
    match vm.capvisor.reboot_limit {
        None => w.u8(0),
        Some(n) => {
            w.u8(1);
            w.u32(n);
        }
    }
    w.count(vm.flash_images.len(), "flash_images")?;
    for f in &vm.flash_images {
        w.str(&f.device, "flash device")?;
        w.str(&f.path, "flash image path")?;
    }
    Ok(())
}

// ---- decoding ----

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let end = at.checked_add(n).ok_or(DecodeError::Truncated { offset: at })?;
        let s = self.buf.get(at..end).ok_or(DecodeError::Truncated { offset: at })?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items each at least `min_item_bytes` long: never more than the bytes left
    /// allow, so a forged count cannot make the decoder allocate.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = usize::from(self.u16()?);
        let left = self.buf.len().saturating_sub(self.pos);
        if n.saturating_mul(min_item_bytes.max(1)) > left {
            return Err(DecodeError::Truncated { offset: at });
        }
        Ok(n)
    }
    fn str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let n = self.count(1)?;
        let at = self.pos;
        let bytes = self.take(n)?;
        core::str::from_utf8(bytes).map(String::from).map_err(|_| DecodeError::BadValue { offset: at, what })
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue { offset: at, what }),
        }
    }
    fn range(&mut self) -> Result<GuestRange, DecodeError> {
        Ok(GuestRange { base: GuestPhysAddr(self.u64()?), size_bytes: self.u64()? })
    }
    fn image(&mut self) -> Result<Image, DecodeError> {
        Ok(Image { path: self.str("image path")?, load_addr: GuestPhysAddr(self.u64()?) })
    }
    fn opt_image(&mut self) -> Result<Option<Image>, DecodeError> {
        Ok(if self.flag("option tag")? { Some(self.image()?) } else { None })
    }
    fn enum_u8<T>(&mut self, what: &'static str, f: impl Fn(u8) -> Option<T>) -> Result<T, DecodeError> {
        let at = self.pos;
        f(self.u8()?).ok_or(DecodeError::BadValue { offset: at, what })
    }
}

/// Decodes bytes written by [`encode_system`]. Total: any input gives a value or an error.
pub fn decode_system(bytes: &[u8]) -> Result<SystemConfig, DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.array::<4>().map_err(|_| DecodeError::BadMagic)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let v = r.u16()?;
    if v != VERSION {
        return Err(DecodeError::BadVersion(v));
    }
    let n = r.count(1)?;
    let mut vms = Vec::with_capacity(n);
    for _ in 0..n {
        vms.push(decode_vm(&mut r)?);
    }
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes { offset: r.pos });
    }
    Ok(SystemConfig { vms })
}

fn decode_vm(r: &mut Reader<'_>) -> Result<VmConfig, DecodeError> {
    let id = r.u32()?;
    let name = r.str("name")?;
    let vm_type = r.u8()?;
    let cpu_num = r.u8()?;
    let n = r.count(8)?;
    let mut phys_cpu_ids = Vec::with_capacity(n);
    for _ in 0..n {
        phys_cpu_ids.push(r.u64()?);
    }
    let entry_point = GuestPhysAddr(r.u64()?);
    let kernel = r.image()?;
    let dtb = r.opt_image()?;
    let ramdisk = r.opt_image()?;
    let cmdline = if r.flag("option tag")? { Some(r.str("cmdline")?) } else { None };
    let n = r.count(18)?;
    let mut memory = Vec::with_capacity(n);
    for _ in 0..n {
        let range = r.range()?;
        let flags = MemFlags(r.u8()?);
        let map = r.enum_u8("map type", |b| MapType::from_number(b.into()))?;
        memory.push(MemRegion { range, flags, map });
    }
    let interrupt_mode = r.enum_u8("interrupt mode", |b| match b {
        0 => Some(InterruptMode::NoIrq),
        1 => Some(InterruptMode::Emulated),
        2 => Some(InterruptMode::Passthrough),
        _ => None,
    })?;
    let n = r.count(2 + 16 + 4 + 1 + 2)?;
    let mut emulated = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("device name")?;
        let range = r.range()?;
        let irq = r.u32()?;
        let kind = r.enum_u8("emulated device type", |b| EmulatedKind::from_number(b.into()))?;
        let m = r.count(8)?;
        let mut cfg = Vec::with_capacity(m);
        for _ in 0..m {
            cfg.push(r.u64()?);
        }
        emulated.push(EmulatedDevice { name, range, irq, kind, cfg });
    }
    let n = r.count(2 + 1 + 4)?;
    let mut passthrough = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("device name")?;
        let region = if r.flag("option tag")? {
            Some(PassthroughRegion { guest: r.range()?, host: PhysAddr(r.u64()?) })
        } else {
            None
        };
        let irq = r.u32()?;
        passthrough.push(PassthroughDevice { name, region, irq });
    }
    let n = r.count(16)?;
    let mut passthrough_addresses = Vec::with_capacity(n);
    for _ in 0..n {
        passthrough_addresses.push(r.range()?);
    }
    let n = r.count(2)?;
    let mut excluded_devices = Vec::with_capacity(n);
    for _ in 0..n {
        excluded_devices.push(r.str("excluded device")?);
    }
    let unhandled_mmio = r.enum_u8("unhandled_mmio", |b| match b {
        0 => Some(UnhandledMmio::Stop),
        1 => Some(UnhandledMmio::InjectAbort),
        _ => None,
    })?;
    let gic_irq_lines = r.u16()?;
    let vcpu_priority = r.u8()?;
    let gic_cpu_interface = if r.flag("option tag")? {
        Some(PassthroughRegion { guest: r.range()?, host: PhysAddr(r.u64()?) })
    } else {
        None
    };
    let populate_ram = r.enum_u8("populate_ram", |b| match b {
        0 => Some(PopulateRam::Eager),
        1 => Some(PopulateRam::OnTouch),
        _ => None,
    })?;
    let on_reset = r.enum_u8("on_reset", |b| match b {
        0 => Some(OnReset::Reboot),
        1 => Some(OnReset::Stop),
        _ => None,
    })?;
    let reboot_limit = if r.flag("option tag")? { Some(r.u32()?) } else { None };
    let n = r.count(2)?;
    let mut flash_images = Vec::with_capacity(n);
    for _ in 0..n {
        flash_images.push(FlashImage { device: r.str("flash device")?, path: r.str("flash image path")? });
    }
    Ok(VmConfig {
        id,
        name,
        vm_type,
        cpu_num,
        phys_cpu_ids,
        entry_point,
        kernel,
        dtb,
        ramdisk,
        cmdline,
        memory,
        interrupt_mode,
        emulated,
        passthrough,
        passthrough_addresses,
        excluded_devices,
        capvisor: CapvisorOptions {
            unhandled_mmio,
            gic_irq_lines,
            vcpu_priority,
            gic_cpu_interface,
            populate_ram,
            on_reset,
            reboot_limit,
        },
        flash_images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> SystemConfig {
        let mut a = VmConfig::minimal(1, "alpha", GuestRange::new(0x4000_0000, 0x100_0000), 0x4008_0000);
        a.cpu_num = 2;
        a.phys_cpu_ids = vec![0, 1];
        a.dtb = Some(Image { path: "a.dtb".into(), load_addr: GuestPhysAddr(0x4000_0000) });
        a.cmdline = Some("console=ttyAMA0 earlycon".into());
        a.emulated = vec![
            EmulatedDevice {
                name: "gicd".into(),
                range: GuestRange::new(0x0800_0000, 0x1_0000),
                irq: 0,
                kind: EmulatedKind::InterruptController,
                cfg: vec![],
            },
            EmulatedDevice {
                name: "uart".into(),
                range: GuestRange::new(0x0900_0000, 0x1000),
                irq: 33,
                kind: EmulatedKind::Console,
                cfg: vec![7, 8],
            },
        ];
        a.capvisor.gic_cpu_interface =
            Some(PassthroughRegion { guest: GuestRange::new(0x0801_0000, 0x2000), host: PhysAddr(0x0804_0000) });
        a.passthrough = vec![
            PassthroughDevice {
                name: "rtc".into(),
                region: Some(PassthroughRegion {
                    guest: GuestRange::new(0x0901_0000, 0x1000),
                    host: PhysAddr(0x0901_0000),
                }),
                irq: 34,
            },
            PassthroughDevice { name: "/timer".into(), region: None, irq: 0 },
        ];
        a.passthrough_addresses = vec![GuestRange::new(0x0a00_0000, 0x1000)];
        a.excluded_devices = vec!["/pcie@10000000".into()];
        a.capvisor.unhandled_mmio = UnhandledMmio::InjectAbort;
        a.capvisor.reboot_limit = Some(20);
        let mut b = VmConfig::minimal(2, "beta", GuestRange::new(0x4000_0000, 0x80_0000), 0x4000_0000);
        b.capvisor.populate_ram = PopulateRam::OnTouch;
        b.capvisor.on_reset = OnReset::Stop;
        SystemConfig { vms: vec![a, b] }
    }

    #[test]
    fn round_trips_every_field() {
        let sys = sample();
        assert!(check_system(&sys).is_empty(), "{:?}", check_system(&sys));
        let bytes = encode_system(&sys).unwrap();
        assert_eq!(&bytes[..4], b"CVCF");
        assert_eq!(decode_system(&bytes), Ok(sys.clone()));
        assert_eq!(load_system(&bytes), Ok(sys));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode_system(&sample()).unwrap();
        for n in 0..bytes.len() {
            assert!(decode_system(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_system(&longer), Err(DecodeError::TrailingBytes { offset: bytes.len() }));
    }

    #[test]
    fn corrupted_bytes_never_panic_and_forged_counts_do_not_allocate() {
        let bytes = encode_system(&sample()).unwrap();
        // Every single-byte corruption, to every value class that matters.
        for i in 0..bytes.len() {
            for v in [0u8, 1, 2, 0x7f, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = decode_system(&b);
            }
        }
        // A VM count of 65535 with nothing behind it is refused before allocating.
        let mut b = Vec::from(&MAGIC[..]);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(decode_system(&b), Err(DecodeError::Truncated { offset: 6 }));
    }

    #[test]
    fn bad_magic_version_and_enum_values_are_named() {
        assert_eq!(decode_system(b"XXXX\x01\x00\x00\x00"), Err(DecodeError::BadMagic));
        assert_eq!(decode_system(b"CV"), Err(DecodeError::BadMagic));
        assert_eq!(decode_system(b"CVCF\x01\x00\x00\x00"), Err(DecodeError::BadVersion(1)));
        assert_eq!(decode_system(b"CVCF\x03\x00\x00\x00"), Err(DecodeError::BadVersion(3)));
        assert_eq!(decode_system(b"CVCF\x04\x00\x00\x00"), Err(DecodeError::BadVersion(4)), "before GICv3");
        assert_eq!(decode_system(b"CVCF\x06\x00\x00\x00"), Err(DecodeError::BadVersion(6)));
        let sys = SystemConfig { vms: vec![sample().vms[1].clone()] };
        let bytes = encode_system(&sys).unwrap();
        // The last fields are unhandled_mmio (u8), gic_irq_lines (u16), priority (u8), an
        // absent gic_cpu_interface (one 0 byte), populate_ram (u8), on_reset (u8), an absent
        // reboot_limit (one 0 byte) and no flash images (u16).
        let at = bytes.len() - 10;
        let mut b = bytes.clone();
        b[at] = 9;
        assert_eq!(decode_system(&b), Err(DecodeError::BadValue { offset: at, what: "unhandled_mmio" }));
        let at = bytes.len() - 5;
        let mut b = bytes.clone();
        b[at] = 2;
        assert_eq!(decode_system(&b), Err(DecodeError::BadValue { offset: at, what: "populate_ram" }));
        let at = bytes.len() - 4;
        let mut b = bytes.clone();
        b[at] = 2;
        assert_eq!(decode_system(&b), Err(DecodeError::BadValue { offset: at, what: "on_reset" }));
        let at = bytes.len() - 3;
        let mut b = bytes.clone();
        b[at] = 2;
        assert_eq!(decode_system(&b), Err(DecodeError::BadValue { offset: at, what: "option tag" }));
    }

    #[test]
    fn on_reset_and_reboot_limit_round_trip_and_load_rechecks_them() {
        let mut sys = sample();
        for (on_reset, limit) in
            [(OnReset::Reboot, None), (OnReset::Reboot, Some(1)), (OnReset::Reboot, Some(u32::MAX))]
        {
            sys.vms[0].capvisor.on_reset = on_reset;
            sys.vms[0].capvisor.reboot_limit = limit;
            let bytes = encode_system(&sys).unwrap();
            assert_eq!(load_system(&bytes), Ok(sys.clone()));
        }
        sys.vms[1].capvisor.on_reset = OnReset::Stop;
        let bytes = encode_system(&sys).unwrap();
        assert_eq!(load_system(&bytes).unwrap().vms[1].capvisor.on_reset, OnReset::Stop);
        // Bytes the host tool would never write: a limit of 0, a limit with "stop".
        sys.vms[0].capvisor.reboot_limit = Some(0);
        sys.vms[1].capvisor.reboot_limit = Some(3);
        let bytes = encode_system(&sys).unwrap();
        match load_system(&bytes) {
            Err(LoadError::Invalid(ps)) => {
                let got: Vec<_> = ps.iter().map(|p| (p.vm, p.field.clone(), p.kind.clone())).collect();
                let field = crate::Field::Key("capvisor.reboot_limit");
                assert_eq!(
                    got,
                    [
                        (0, field.clone(), crate::ProblemKind::ZeroRebootLimit),
                        (1, field, crate::ProblemKind::RebootLimitWithStop),
                    ]
                );
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn load_rechecks_what_it_decodes() {
        let mut sys = sample();
        sys.vms[1].cpu_num = 0;
        sys.vms[1].id = 1;
        let bytes = encode_system(&sys).unwrap();
        match load_system(&bytes) {
            Err(LoadError::Invalid(ps)) => {
                assert!(ps.iter().any(|p| p.vm == 1 && p.kind == crate::ProblemKind::NoCpus));
                assert!(ps.iter().any(|p| p.vm == 1 && matches!(p.kind, crate::ProblemKind::DuplicateVm(_))));
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn over_long_lists_are_refused_when_encoding() {
        let mut sys = sample();
        sys.vms[0].excluded_devices = vec![String::new(); 70_000];
        assert_eq!(encode_system(&sys), Err(DecodeError::TooLong("excluded_devices")));
    }
}
