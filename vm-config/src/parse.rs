//! TOML to [`VmConfig`] and [`SystemConfig`], on the host.
//!
//! The document is read into `toml`'s spanned tree and walked by hand rather than through
//! `serde` derive, so that every error, whether a type error, an unknown key, a missing key or
//! a broken rule from [`crate::check`], knows its exact file, line, column and dotted field
//! path. Every error is collected; parsing does not stop at the first.
//!
//! Accepted input is axvisor's VM format as its `axvmconfig` 0.2 reads it (entries of
//! `memory_regions`, `emu_devices`, `passthrough_devices` and `passthrough_addresses` as
//! arrays, or as tables with the same element names), plus the spellings `axvmconfig` 0.8
//! added for the same things (`guest_type`, `devices.passthrough`/`disabled` as
//! `{ path = ".." }`), plus the `[capvisor]` table. Keys neither knows are errors: a typo must
//! not silently become a default.

use std::format;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;
use std::{fmt, fs};

use sel4::PhysAddr;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::addr::{GuestPhysAddr, GuestRange};
use crate::check::{
    EMULATED_ELEMENTS, Field, MEMORY_ELEMENTS, PASSTHROUGH_ADDRESS_ELEMENTS, PASSTHROUGH_ELEMENTS, ProblemKind,
    check_system, check_vm,
};
use crate::model::{
    CapvisorOptions, EmulatedDevice, EmulatedKind, FlashImage, Image, InterruptMode, MapType, MemFlags, MemRegion,
    OnReset, PassthroughDevice, PassthroughRegion, PopulateRam, SystemConfig, UnhandledMmio, VmConfig,
};
use crate::place::{HostMemory, PlaceProblem, check_placement};

/// One error in a configuration file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigError {
    /// The file, as it was named to the parser.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted path of the field (`kernel.memory_regions[1].map_type`); empty for a syntax
    /// error outside any key.
    pub field: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a configuration file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ErrorKind {
    /// The file cannot be read.
    Io(String),
    /// Not valid TOML.
    Syntax(String),
    /// A key that neither axvisor's format nor `[capvisor]` has.
    UnknownKey,
    /// A required key is absent.
    Missing,
    /// A value of the wrong TOML type.
    WrongType {
        /// What the field takes.
        expected: &'static str,
        /// What it got.
        found: &'static str,
    },
    /// An integer outside the field's range.
    OutOfRange {
        /// The value as written.
        value: String,
        /// Largest accepted.
        max: u64,
    },
    /// A string that is not one of the accepted values.
    UnknownValue {
        /// The value.
        value: String,
        /// The accepted ones.
        expected: &'static str,
    },
    /// An array entry with too few or too many elements.
    WrongLength {
        /// What the entry takes.
        expected: &'static str,
        /// Elements given.
        found: usize,
    },
    /// Valid for axvisor but not something capvisor does.
    Unsupported(&'static str),
    /// A rule of [`crate::check`].
    Check(ProblemKind),
    /// Where a VM sits in host-physical memory ([`crate::place`]).
    Place(PlaceProblem),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(e) => write!(f, "cannot read: {e}"),
            ErrorKind::Syntax(e) => write!(f, "TOML syntax: {e}"),
            ErrorKind::UnknownKey => f.write_str("unknown key (not in axvisor's VM format or [capvisor])"),
            ErrorKind::Missing => f.write_str("required key is missing"),
            ErrorKind::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            ErrorKind::OutOfRange { value, max } => write!(f, "{value} is out of range (0 to {max:#x})"),
            ErrorKind::UnknownValue { value, expected } => write!(f, "{value:?} is not one of {expected}"),
            ErrorKind::WrongLength { expected, found } => write!(f, "{found} elements; expected {expected}"),
            ErrorKind::Unsupported(why) => write!(f, "not supported by capvisor: {why}"),
            ErrorKind::Check(p) => write!(f, "{p}"),
            ErrorKind::Place(p) => write!(f, "{p}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.kind)
        } else {
            write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.field, self.kind)
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors of a parse, in file order; never empty.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The source text and the span of every field seen, for turning offsets and
/// [`Field`]s into positions.
struct Doc<'t> {
    file: String,
    text: &'t str,
    spans: Vec<(String, Range<usize>)>,
    errors: Vec<ConfigError>,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

impl<'t> Doc<'t> {
    fn new(file: &str, text: &'t str) -> Self {
        Doc { file: String::from(file), text, spans: Vec::new(), errors: Vec::new() }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    fn error_at(&mut self, span: Range<usize>, field: &str, kind: ErrorKind) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError { file: self.file.clone(), line, column, field: String::from(field), kind });
    }

    fn record(&mut self, path: &str, span: Range<usize>) {
        self.spans.push((String::from(path), span));
    }

    /// The span recorded for `path`, or for its closest recorded parent (a missing key is
    /// reported at its table).
    fn span_of(&self, path: &str) -> Range<usize> {
        let mut p = path;
        loop {
            if let Some((_, s)) = self.spans.iter().find(|(k, _)| k == p) {
                return s.clone();
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 0..0,
            }
        }
    }

    fn problem(&mut self, field: &Field, kind: ProblemKind) {
        let path = field.to_string();
        let span = self.span_of(&path);
        self.error_at(span, &path, ErrorKind::Check(kind));
    }

    // ---- typed accessors: each records the span and reports its own errors ----

    fn table<'v, 'i>(&mut self, v: &'v Value<'i>, path: &str) -> Option<&'v DeTable<'i>> {
        self.record(path, v.span());
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error_at(v.span(), path, ErrorKind::WrongType { expected: "a table", found: type_name(other) });
                None
            }
        }
    }

    fn keys(&mut self, t: &DeTable<'_>, path: &str, allowed: &[&str]) {
        for (k, _) in t.iter() {
            if !allowed.contains(&k.get_ref().as_ref()) {
                let field = join(path, k.get_ref());
                self.error_at(k.span(), &field, ErrorKind::UnknownKey);
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, path: &str, max: u64) -> Option<u64> {
        self.record(path, v.span());
        match v.get_ref() {
            DeValue::Integer(i) => {
                let parsed = i128::from_str_radix(i.as_str(), i.radix()).ok();
                match parsed.and_then(|n| u64::try_from(n).ok()).filter(|n| *n <= max) {
                    Some(n) => Some(n),
                    None => {
                        let value = self.text.get(v.span()).unwrap_or(i.as_str()).to_string();
                        self.error_at(v.span(), path, ErrorKind::OutOfRange { value, max });
                        None
                    }
                }
            }
            other => {
                self.error_at(v.span(), path, ErrorKind::WrongType { expected: "an integer", found: type_name(other) });
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, path: &str) -> Option<String> {
        self.record(path, v.span());
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error_at(v.span(), path, ErrorKind::WrongType { expected: "a string", found: type_name(other) });
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        self.record(path, v.span());
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.error_at(v.span(), path, ErrorKind::WrongType { expected: "a boolean", found: type_name(other) });
                None
            }
        }
    }

    fn array<'v, 'i>(&mut self, v: &'v Value<'i>, path: &str) -> Option<&'v [Value<'i>]> {
        self.record(path, v.span());
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                self.error_at(v.span(), path, ErrorKind::WrongType { expected: "an array", found: type_name(other) });
                None
            }
        }
    }

    fn missing(&mut self, table_span: Range<usize>, path: &str) {
        self.error_at(table_span, path, ErrorKind::Missing);
    }

    /// Reads an axvisor array entry (`[a, b, c]`) or the same entry as a table
    /// (`{ a = .., b = .. }`) into its elements by position. Elements past the end of a
    /// short array are `None`; `min` of them are required.
    fn entry<'v, 'i>(
        &mut self,
        v: &'v Value<'i>,
        path: &str,
        names: &[&'static str],
        min: usize,
        expected: &'static str,
    ) -> Option<Vec<Option<&'v Value<'i>>>> {
        self.record(path, v.span());
        match v.get_ref() {
            DeValue::Array(a) => {
                if a.len() < min || a.len() > names.len() {
                    self.error_at(v.span(), path, ErrorKind::WrongLength { expected, found: a.len() });
                    return None;
                }
                Some((0..names.len()).map(|i| a.get(i)).collect())
            }
            DeValue::Table(t) => {
                self.keys(t, path, names);
                let els: Vec<_> = names.iter().map(|n| t.get(*n)).collect();
                for (i, n) in names.iter().enumerate().take(min) {
                    if els.get(i).copied().flatten().is_none() {
                        self.missing(v.span(), &format!("{path}.{n}"));
                    }
                }
                Some(els)
            }
            other => {
                self.error_at(
                    v.span(),
                    path,
                    ErrorKind::WrongType { expected: "an array or a table", found: type_name(other) },
                );
                None
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { String::from(key) } else { format!("{path}.{key}") }
}

const MAX_ADDR: u64 = u64::MAX;

/// A table's keys, looked up by name with the span of the table for "missing" errors.
struct Tbl<'v, 'i> {
    t: &'v DeTable<'i>,
    span: Range<usize>,
    path: &'static str,
}

impl<'v, 'i> Tbl<'v, 'i> {
    fn get(&self, key: &str) -> Option<&'v Value<'i>> {
        self.t.get(key)
    }
    fn field(&self, key: &str) -> String {
        join(self.path, key)
    }
}

fn req_int(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, key: &str, max: u64) -> Option<u64> {
    match t.get(key) {
        Some(v) => doc.integer(v, &t.field(key), max),
        None => {
            doc.missing(t.span.clone(), &t.field(key));
            None
        }
    }
}

fn opt_int(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, key: &str, max: u64) -> Option<u64> {
    t.get(key).and_then(|v| doc.integer(v, &t.field(key), max))
}

fn req_str(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, key: &str) -> Option<String> {
    match t.get(key) {
        Some(v) => doc.string(v, &t.field(key)),
        None => {
            doc.missing(t.span.clone(), &t.field(key));
            None
        }
    }
}

fn opt_str(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, key: &str) -> Option<String> {
    t.get(key).and_then(|v| doc.string(v, &t.field(key)))
}

fn int_el(doc: &mut Doc<'_>, el: Option<&Value<'_>>, path: &str, name: &str, max: u64) -> Option<u64> {
    match el {
        Some(v) => doc.integer(v, &format!("{path}.{name}"), max),
        None => Some(0),
    }
}

const BASE_KEYS: &[&str] = &["id", "name", "vm_type", "guest_type", "cpu_num", "phys_cpu_ids", "phys_cpu_sets"];
const KERNEL_KEYS: &[&str] = &[
    "entry_point",
    "kernel_path",
    "kernel_load_addr",
    "bios_path",
    "bios_load_addr",
    "enable_bios",
    "boot_protocol",
    "uefi_firmware_path",
    "dtb_path",
    "dtb_load_addr",
    "ramdisk_path",
    "ramdisk_load_addr",
    "image_location",
    "cmdline",
    "disk_path",
    "memory_regions",
];
const DEVICES_KEYS: &[&str] = &[
    "emu_devices",
    "passthrough_devices",
    "passthrough_addresses",
    "excluded_devices",
    "interrupt_mode",
    "passthrough",
    "disabled",
    "virtual",
];
const CAPVISOR_KEYS: &[&str] = &[
    "unhandled_mmio",
    "gic_irq_lines",
    "vcpu_priority",
    "gic_cpu_interface",
    "populate_ram",
    "flash_images",
    "on_reset",
    "reboot_limit",
];

/// Partially built fields; `None` where an error was already reported.
struct Parts {
    vm: VmConfig,
    ok: bool,
}

/// Parses one VM from TOML text. `file` names the text in errors.
pub fn parse_vm_str(file: &str, text: &str) -> Result<VmConfig, ConfigErrors> {
    let mut doc = Doc::new(file, text);
    let vm = parse_vm_doc(&mut doc);
    finish_vm(doc, vm)
}

fn finish_vm(mut doc: Doc<'_>, vm: Option<VmConfig>) -> Result<VmConfig, ConfigErrors> {
    if let Some(vm) = &vm {
        for p in check_vm(vm) {
            doc.problem(&p.field, p.kind);
        }
    }
    match vm {
        Some(vm) if doc.errors.is_empty() => Ok(vm),
        _ => {
            doc.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(doc.errors))
        }
    }
}

fn parse_root<'t>(doc: &mut Doc<'t>) -> Option<Spanned<DeTable<'t>>> {
    match DeTable::parse(doc.text) {
        Ok(t) => Some(t),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            doc.error_at(span, "", ErrorKind::Syntax(String::from(e.message().trim())));
            None
        }
    }
}

fn parse_vm_doc(doc: &mut Doc<'_>) -> Option<VmConfig> {
    let root = parse_root(doc)?;
    let root_span = root.span();
    let root = root.get_ref();
    doc.keys(root, "", &["base", "kernel", "devices", "capvisor"]);
    let mut parts = Parts { vm: VmConfig::minimal(0, "", GuestRange::default(), 0), ok: true };
    parts.vm.memory.clear();
    parts.vm.vm_type = 1;
    // axvmconfig's default when the key is absent.
    parts.vm.interrupt_mode = InterruptMode::NoIrq;

    // Each section: its table and span, or an error (wrong type, or missing if required).
    let section = |doc: &mut Doc<'_>, name: &'static str, required: bool| -> Option<Tbl<'_, '_>> {
        let Some(v) = root.get(name) else {
            if required {
                doc.missing(root_span.clone(), name);
            }
            return None;
        };
        doc.table(v, name).map(|t| Tbl { t, span: v.span(), path: name })
    };
    let base = section(doc, "base", true);
    let kernel = section(doc, "kernel", true);
    let devices = section(doc, "devices", false);
    let capvisor = section(doc, "capvisor", false);
    if base.is_none() || kernel.is_none() {
        parts.ok = false;
    }
    if let Some(t) = &base {
        parse_base(doc, t, &mut parts);
    }
    if let Some(t) = &kernel {
        parse_kernel(doc, t, &mut parts);
    }
    if let Some(t) = &devices {
        parse_devices(doc, t, &mut parts);
    }
    if let Some(t) = &capvisor {
        parse_capvisor(doc, t, &mut parts);
    }
    if parts.ok && doc.errors.is_empty() { Some(parts.vm) } else { None }
}

fn parse_base(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, parts: &mut Parts) {
    doc.keys(t.t, t.path, BASE_KEYS);
    let vm = &mut parts.vm;
    match req_int(doc, t, "id", u32::MAX.into()) {
        Some(id) => vm.id = id as u32,
        None => parts.ok = false,
    }
    match req_str(doc, t, "name") {
        Some(n) => vm.name = n,
        None => parts.ok = false,
    }
    if let Some(v) = opt_int(doc, t, "vm_type", u8::MAX.into()) {
        vm.vm_type = v as u8;
    }
    if let Some(v) = t.get("guest_type") {
        match doc.string(v, "base.guest_type").as_deref() {
            // axvmconfig 0.8 reads the legacy numbers 0 and 1 as passthrough, 2 as virtualized.
            Some("passthrough") => vm.vm_type = 1,
            Some("virtualized") => vm.vm_type = 2,
            Some(other) => doc.error_at(
                v.span(),
                "base.guest_type",
                ErrorKind::UnknownValue { value: String::from(other), expected: "\"virtualized\", \"passthrough\"" },
            ),
            None => {}
        }
    }
    match req_int(doc, t, "cpu_num", u8::MAX.into()) {
        Some(n) => vm.cpu_num = n as u8,
        None => parts.ok = false,
    }
    if let Some(v) = t.get("phys_cpu_ids")
        && let Some(a) = doc.array(v, "base.phys_cpu_ids")
    {
        for (i, e) in a.iter().enumerate() {
            if let Some(id) = doc.integer(e, &format!("base.phys_cpu_ids[{i}]"), MAX_ADDR) {
                vm.phys_cpu_ids.push(id);
            }
        }
    }
    // phys_cpu_sets (axvisor's CPU masks) is type-checked and otherwise ignored: capvisor pins
    // each vCPU to the one core its phys_cpu_ids entry names (VmConfig::pinned_core).
    if let Some(v) = t.get("phys_cpu_sets")
        && let Some(a) = doc.array(v, "base.phys_cpu_sets")
    {
        for (i, e) in a.iter().enumerate() {
            doc.integer(e, &format!("base.phys_cpu_sets[{i}]"), MAX_ADDR);
        }
    }
}

fn parse_kernel(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, parts: &mut Parts) {
    doc.keys(t.t, t.path, KERNEL_KEYS);
    let vm = &mut parts.vm;
    match req_int(doc, t, "entry_point", MAX_ADDR) {
        Some(a) => vm.entry_point = GuestPhysAddr(a),
        None => parts.ok = false,
    }
    let path = req_str(doc, t, "kernel_path");
    let load = req_int(doc, t, "kernel_load_addr", MAX_ADDR);
    match (path, load) {
        (Some(path), Some(load)) => vm.kernel = Image { path, load_addr: GuestPhysAddr(load) },
        _ => parts.ok = false,
    }
    // A DTB load address without a path is axvisor's "generate the device tree" case: the
    // image builder makes one. A path without a load address has nowhere to go.
    let dtb_path = opt_str(doc, t, "dtb_path");
    let dtb_load = opt_int(doc, t, "dtb_load_addr", MAX_ADDR);
    match (dtb_path, dtb_load) {
        (path, Some(load)) => vm.dtb = Some(Image { path: path.unwrap_or_default(), load_addr: GuestPhysAddr(load) }),
        (Some(_), None) if t.get("dtb_load_addr").is_none() => doc.missing(t.span.clone(), "kernel.dtb_load_addr"),
        _ => {}
    }
    let rd_path = opt_str(doc, t, "ramdisk_path");
    let rd_load = opt_int(doc, t, "ramdisk_load_addr", MAX_ADDR);
    match (rd_path, rd_load) {
        (Some(path), Some(load)) => vm.ramdisk = Some(Image { path, load_addr: GuestPhysAddr(load) }),
        (Some(_), None) if t.get("ramdisk_load_addr").is_none() => {
            doc.missing(t.span.clone(), "kernel.ramdisk_load_addr")
        }
        _ => {}
    }
    vm.cmdline = opt_str(doc, t, "cmdline");
    if let Some(v) = t.get("image_location")
        && let Some(s) = doc.string(v, "kernel.image_location")
        && s != "memory"
        && s != "fs"
    {
        doc.error_at(
            v.span(),
            "kernel.image_location",
            ErrorKind::UnknownValue { value: s, expected: "\"memory\", \"fs\"" },
        );
    }
    for key in ["bios_path", "bios_load_addr", "uefi_firmware_path"] {
        if let Some(v) = t.get(key) {
            doc.error_at(
                v.span(),
                &t.field(key),
                ErrorKind::Unsupported("firmware boot; AArch64 guests boot directly"),
            );
        }
    }
    if let Some(v) = t.get("enable_bios")
        && doc.boolean(v, "kernel.enable_bios") == Some(true)
    {
        doc.error_at(
            v.span(),
            "kernel.enable_bios",
            ErrorKind::Unsupported("firmware boot; AArch64 guests boot directly"),
        );
    }
    if let Some(v) = t.get("boot_protocol")
        && let Some(s) = doc.string(v, "kernel.boot_protocol")
        && s != "direct"
    {
        doc.error_at(v.span(), "kernel.boot_protocol", ErrorKind::Unsupported("only \"direct\" boot"));
    }
    if let Some(v) = t.get("disk_path") {
        doc.error_at(v.span(), "kernel.disk_path", ErrorKind::Unsupported("no block device yet"));
    }
    match t.get("memory_regions") {
        None => {
            doc.missing(t.span.clone(), "kernel.memory_regions");
            parts.ok = false;
        }
        Some(v) => {
            if let Some(a) = doc.array(v, "kernel.memory_regions") {
                for (i, e) in a.iter().enumerate() {
                    match parse_memory(doc, e, i) {
                        Some(m) => vm.memory.push(m),
                        None => parts.ok = false,
                    }
                }
            }
        }
    }
}

fn parse_memory(doc: &mut Doc<'_>, v: &Value<'_>, i: usize) -> Option<MemRegion> {
    let path = format!("kernel.memory_regions[{i}]");
    let els = doc.entry(v, &path, &MEMORY_ELEMENTS, 4, "4: [gpa, size, flags, map_type]")?;
    let gpa = int_el(doc, els[0], &path, "gpa", MAX_ADDR);
    let size = int_el(doc, els[1], &path, "size", MAX_ADDR);
    let flags = int_el(doc, els[2], &path, "flags", MAX_ADDR);
    let map = int_el(doc, els[3], &path, "map_type", MAX_ADDR);
    let (gpa, size, flags, map_n) = (gpa?, size?, flags?, map?);
    let map = match MapType::from_number(map_n) {
        Some(m) => m,
        None => {
            doc.problem(&Field::Memory(i, crate::check::Part::Element(3)), ProblemKind::UnknownMapType(map_n));
            return None;
        }
    };
    // Out-of-range flag bits are a check of their own (UnknownFlags); keep the low byte and
    // report the whole value if it does not fit.
    let flags = match u8::try_from(flags) {
        Ok(f) => MemFlags(f),
        Err(_) => {
            doc.problem(&Field::Memory(i, crate::check::Part::Element(2)), ProblemKind::UnknownFlags(flags));
            return None;
        }
    };
    Some(MemRegion { range: GuestRange::new(gpa, size), flags, map })
}

fn parse_devices(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, parts: &mut Parts) {
    doc.keys(t.t, t.path, DEVICES_KEYS);
    let vm = &mut parts.vm;
    if let Some(v) = t.get("interrupt_mode")
        && let Some(s) = doc.string(v, "devices.interrupt_mode")
    {
        vm.interrupt_mode = match s.as_str() {
            "no_irq" | "no" | "none" => InterruptMode::NoIrq,
            "emu" | "emulated" => InterruptMode::Emulated,
            "passthrough" | "pt" => InterruptMode::Passthrough,
            _ => {
                doc.error_at(
                    v.span(),
                    "devices.interrupt_mode",
                    ErrorKind::UnknownValue { value: s, expected: "\"no_irq\", \"emu\", \"passthrough\"" },
                );
                vm.interrupt_mode
            }
        };
    }
    if let Some(v) = t.get("emu_devices")
        && let Some(a) = doc.array(v, "devices.emu_devices")
    {
        for (i, e) in a.iter().enumerate() {
            match parse_emulated(doc, e, i) {
                Some(d) => vm.emulated.push(d),
                None => parts.ok = false,
            }
        }
    }
    if let Some(v) = t.get("passthrough_devices")
        && let Some(a) = doc.array(v, "devices.passthrough_devices")
    {
        for (i, e) in a.iter().enumerate() {
            match parse_passthrough(doc, e, i) {
                Some(d) => vm.passthrough.push(d),
                None => parts.ok = false,
            }
        }
    }
    if let Some(v) = t.get("passthrough_addresses")
        && let Some(a) = doc.array(v, "devices.passthrough_addresses")
    {
        for (i, e) in a.iter().enumerate() {
            let path = format!("devices.passthrough_addresses[{i}]");
            let Some(els) = doc.entry(e, &path, &PASSTHROUGH_ADDRESS_ELEMENTS, 2, "2: [base_gpa, length]") else {
                parts.ok = false;
                continue;
            };
            let base = int_el(doc, els[0], &path, "base_gpa", MAX_ADDR);
            let len = int_el(doc, els[1], &path, "length", MAX_ADDR);
            match (base, len) {
                (Some(b), Some(l)) => vm.passthrough_addresses.push(GuestRange::new(b, l)),
                _ => parts.ok = false,
            }
        }
    }
    if let Some(v) = t.get("excluded_devices")
        && let Some(a) = doc.array(v, "devices.excluded_devices")
    {
        for (i, e) in a.iter().enumerate() {
            let path = format!("devices.excluded_devices[{i}]");
            // axvmconfig 0.2 writes each entry as a list of paths.
            if let Some(inner) = doc.array(e, &path) {
                for (j, p) in inner.iter().enumerate() {
                    if let Some(s) = doc.string(p, &format!("{path}[{j}]")) {
                        vm.excluded_devices.push(s);
                    }
                }
            }
        }
    }
    // axvmconfig 0.8 spellings: `passthrough` and `disabled` as `{ path = "/..." }`.
    for (key, excluded) in [("passthrough", false), ("disabled", true)] {
        if let Some(v) = t.get(key)
            && let Some(a) = doc.array(v, &t.field(key))
        {
            for (i, e) in a.iter().enumerate() {
                let path = format!("devices.{key}[{i}]");
                let Some(tbl) = doc.table(e, &path) else { continue };
                doc.keys(tbl, &path, &["path"]);
                let Some(p) = tbl.get("path") else {
                    doc.missing(e.span(), &format!("{path}.path"));
                    continue;
                };
                if let Some(s) = doc.string(p, &format!("{path}.path")) {
                    if excluded {
                        vm.excluded_devices.push(s);
                    } else {
                        vm.passthrough.push(PassthroughDevice { name: s, region: None, irq: 0 });
                    }
                }
            }
        }
    }
    if let Some(v) = t.get("virtual") {
        doc.error_at(v.span(), "devices.virtual", ErrorKind::Unsupported("axvmconfig 0.8 virtual device catalog"));
    }
}

fn parse_emulated(doc: &mut Doc<'_>, v: &Value<'_>, i: usize) -> Option<EmulatedDevice> {
    let path = format!("devices.emu_devices[{i}]");
    let els =
        doc.entry(v, &path, &EMULATED_ELEMENTS, 5, "5 or 6: [name, base_gpa, length, irq_id, emu_type, cfg_list]")?;
    let name = match els[0] {
        Some(v) => doc.string(v, &format!("{path}.name")),
        None => None,
    };
    let base = int_el(doc, els[1], &path, "base_gpa", MAX_ADDR);
    let len = int_el(doc, els[2], &path, "length", MAX_ADDR);
    let irq = int_el(doc, els[3], &path, "irq_id", u32::MAX.into());
    let ty = int_el(doc, els[4], &path, "emu_type", MAX_ADDR);
    let mut cfg = Vec::new();
    if let Some(c) = els[5]
        && let Some(a) = doc.array(c, &format!("{path}.cfg_list"))
    {
        for (j, e) in a.iter().enumerate() {
            cfg.push(doc.integer(e, &format!("{path}.cfg_list[{j}]"), MAX_ADDR)?);
        }
    }
    let (name, base, len, irq, ty) = (name?, base?, len?, irq?, ty?);
    let Some(kind) = EmulatedKind::from_number(ty) else {
        doc.problem(&Field::Emulated(i, crate::check::Part::Element(4)), ProblemKind::UnsupportedDevice(ty));
        return None;
    };
    Some(EmulatedDevice { name, range: GuestRange::new(base, len), irq: irq as u32, kind, cfg })
}

fn parse_passthrough(doc: &mut Doc<'_>, v: &Value<'_>, i: usize) -> Option<PassthroughDevice> {
    let path = format!("devices.passthrough_devices[{i}]");
    let els = doc.entry(v, &path, &PASSTHROUGH_ELEMENTS, 1, "1 to 5: [name, base_gpa, base_hpa, length, irq_id]")?;
    let name = match els[0] {
        Some(v) => doc.string(v, &format!("{path}.name")),
        None => None,
    };
    let gpa = int_el(doc, els[1], &path, "base_gpa", MAX_ADDR);
    let hpa = int_el(doc, els[2], &path, "base_hpa", MAX_ADDR);
    let len = int_el(doc, els[3], &path, "length", MAX_ADDR);
    let irq = int_el(doc, els[4], &path, "irq_id", u32::MAX.into());
    let (name, gpa, hpa, len, irq) = (name?, gpa?, hpa?, len?, irq?);
    // Only a name (a device-tree selector such as "/" or "/timer"): nothing to map here.
    let region = if len == 0 && gpa == 0 && hpa == 0 {
        None
    } else {
        Some(PassthroughRegion { guest: GuestRange::new(gpa, len), host: PhysAddr(hpa) })
    };
    Some(PassthroughDevice { name, region, irq: irq as u32 })
}

/// A string key of `t` that names one of `choices`; an unknown string is an error at it.
fn choice<T: Copy>(
    doc: &mut Doc<'_>,
    t: &Tbl<'_, '_>,
    key: &str,
    path: &'static str,
    choices: &[(&str, T)],
    expected: &'static str,
) -> Option<T> {
    let v = t.get(key)?;
    let s = doc.string(v, path)?;
    let found = choices.iter().find(|(name, _)| *name == s).map(|(_, c)| *c);
    if found.is_none() {
        doc.error_at(v.span(), path, ErrorKind::UnknownValue { value: s, expected });
    }
    found
}

fn parse_capvisor(doc: &mut Doc<'_>, t: &Tbl<'_, '_>, parts: &mut Parts) {
    doc.keys(t.t, t.path, CAPVISOR_KEYS);
    let o: &mut CapvisorOptions = &mut parts.vm.capvisor;
    let choices = [("stop", UnhandledMmio::Stop), ("abort", UnhandledMmio::InjectAbort)];
    if let Some(c) = choice(doc, t, "unhandled_mmio", "capvisor.unhandled_mmio", &choices, "\"stop\", \"abort\"") {
        o.unhandled_mmio = c;
    }
    let choices = [("eager", PopulateRam::Eager), ("on_touch", PopulateRam::OnTouch)];
    if let Some(c) = choice(doc, t, "populate_ram", "capvisor.populate_ram", &choices, "\"eager\", \"on_touch\"") {
        o.populate_ram = c;
    }
    let choices = [("reboot", OnReset::Reboot), ("stop", OnReset::Stop)];
    if let Some(c) = choice(doc, t, "on_reset", "capvisor.on_reset", &choices, "\"reboot\", \"stop\"") {
        o.on_reset = c;
    }
    if let Some(n) = opt_int(doc, t, "reboot_limit", u32::MAX.into()) {
        o.reboot_limit = Some(n as u32);
    }
    if let Some(n) = opt_int(doc, t, "gic_irq_lines", u16::MAX.into()) {
        o.gic_irq_lines = n as u16;
    }
    if let Some(n) = opt_int(doc, t, "vcpu_priority", u8::MAX.into()) {
        o.vcpu_priority = n as u8;
    }
    if let Some(v) = t.get("gic_cpu_interface") {
        const NAMES: [&str; 3] = ["guest_base", "host_base", "size"];
        let path = "capvisor.gic_cpu_interface";
        if let Some(els) = doc.entry(v, path, &NAMES, 3, "3: [guest_base, host_base, size]") {
            let g = int_el(doc, els[0], path, "guest_base", MAX_ADDR);
            let h = int_el(doc, els[1], path, "host_base", MAX_ADDR);
            let n = int_el(doc, els[2], path, "size", MAX_ADDR);
            if let (Some(g), Some(h), Some(n)) = (g, h, n) {
                o.gic_cpu_interface = Some(PassthroughRegion { guest: GuestRange::new(g, n), host: PhysAddr(h) });
            }
        }
    }
    if let Some(v) = t.get("flash_images")
        && let Some(a) = doc.array(v, "capvisor.flash_images")
    {
        const NAMES: [&str; 2] = ["device", "path"];
        for (i, e) in a.iter().enumerate() {
            let path = format!("capvisor.flash_images[{i}]");
            let Some(els) = doc.entry(e, &path, &NAMES, 2, "2: [device, path]") else { continue };
            let device = els[0].and_then(|v| doc.string(v, &format!("{path}.device")));
            let file = els[1].and_then(|v| doc.string(v, &format!("{path}.path")));
            if let (Some(device), Some(path)) = (device, file) {
                parts.vm.flash_images.push(FlashImage { device, path });
            }
        }
    }
}

/// Parses one VM file.
pub fn parse_vm_file(path: &Path) -> Result<VmConfig, ConfigErrors> {
    let name = path.display().to_string();
    let text = read(path, &name)?;
    parse_vm_str(&name, &text)
}

fn read(path: &Path, name: &str) -> Result<String, ConfigErrors> {
    fs::read_to_string(path).map_err(|e| {
        ConfigErrors(std::vec![ConfigError {
            file: String::from(name),
            line: 0,
            column: 0,
            field: String::new(),
            kind: ErrorKind::Io(e.to_string()),
        }])
    })
}

/// How [`parse_system_str`] reads a VM file named in the system file: its display name and
/// text, or why it cannot be read.
pub type Loader<'a> = dyn FnMut(&str) -> Result<(String, String), String> + 'a;

/// Parses a system: either a file with `[system] vms = ["a.toml", ...]` (each VM file loaded
/// through `load`, which returns the file's display name and text), or a single VM file,
/// which is a system of one VM. Cross-VM rules (unique ids and names, no shared host memory)
/// are checked and reported at the VM file's field.
pub fn parse_system_str(file: &str, text: &str, load: &mut Loader<'_>) -> Result<SystemConfig, ConfigErrors> {
    let mut doc = Doc::new(file, text);
    let Some(root) = parse_root(&mut doc) else { return Err(ConfigErrors(doc.errors)) };
    let Some(sys_v) = root.get_ref().get("system") else {
        // A single VM file.
        let vm = parse_vm_doc(&mut doc);
        let vm = finish_vm(doc, vm)?;
        return finish_system(std::vec![(file.to_string(), text.to_string(), vm)]);
    };
    doc.keys(root.get_ref(), "", &["system"]);
    let mut names = Vec::new();
    if let Some(t) = doc.table(sys_v, "system") {
        doc.keys(t, "system", &["vms"]);
        match t.get("vms") {
            None => doc.missing(sys_v.span(), "system.vms"),
            Some(v) => {
                if let Some(a) = doc.array(v, "system.vms") {
                    if a.is_empty() {
                        doc.error_at(v.span(), "system.vms", ErrorKind::Missing);
                    }
                    for (i, e) in a.iter().enumerate() {
                        if let Some(s) = doc.string(e, &format!("system.vms[{i}]")) {
                            names.push((s, e.span()));
                        }
                    }
                }
            }
        }
    }
    let mut vms = Vec::new();
    let mut errors = std::mem::take(&mut doc.errors);
    for (name, span) in names {
        match load(&name) {
            Ok((display, text)) => match parse_vm_str(&display, &text) {
                Ok(vm) => vms.push((display, text, vm)),
                Err(e) => errors.extend(e.0),
            },
            Err(why) => {
                let (line, column) = doc.position(span.start);
                errors.push(ConfigError {
                    file: String::from(file),
                    line,
                    column,
                    field: String::from("system.vms"),
                    kind: ErrorKind::Io(why),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    finish_system(vms)
}

fn finish_system(vms: Vec<(String, String, VmConfig)>) -> Result<SystemConfig, ConfigErrors> {
    let sys = SystemConfig { vms: vms.iter().map(|(_, _, vm)| vm.clone()).collect() };
    let problems = check_system(&sys);
    if problems.is_empty() {
        return Ok(sys);
    }
    let mut errors = Vec::new();
    for p in problems {
        let Some((file, text, _)) = vms.get(p.vm) else { continue };
        // Re-walk the VM's file for its spans (cheap, and keeps spans out of the model).
        let mut doc = Doc::new(file, text);
        let _ = parse_vm_doc(&mut doc);
        doc.errors.clear();
        doc.problem(&p.field, p.kind);
        errors.extend(doc.errors);
    }
    Err(ConfigErrors(errors))
}

/// Checks where the VMs of the system in `path` (as [`parse_system_file`] read it into `sys`)
/// sit in host-physical memory against `mem`, and names each refusal at its VM file's line,
/// column and field.
pub fn check_placement_file(path: &Path, sys: &SystemConfig, mem: &HostMemory) -> Result<(), ConfigErrors> {
    let problems = check_placement(sys, mem);
    if problems.is_empty() {
        return Ok(());
    }
    let sources = system_sources(path)?;
    let mut errors = Vec::new();
    for p in problems {
        let Some((file, text)) = sources.get(p.vm) else { continue };
        let mut doc = Doc::new(file, text);
        let _ = parse_vm_doc(&mut doc);
        doc.errors.clear();
        let path = p.field.to_string();
        let span = doc.span_of(&path);
        doc.error_at(span, &path, ErrorKind::Place(p));
        errors.extend(doc.errors);
    }
    Err(ConfigErrors(errors))
}

/// The display name and text of each VM file of the system in `path`, in order.
fn system_sources(path: &Path) -> Result<Vec<(String, String)>, ConfigErrors> {
    let name = path.display().to_string();
    let text = read(path, &name)?;
    let mut doc = Doc::new(&name, &text);
    let Some(root) = parse_root(&mut doc) else { return Err(ConfigErrors(doc.errors)) };
    let Some(vms) = root.get_ref().get("system").and_then(|s| s.get_ref().as_table()).and_then(|t| t.get("vms")) else {
        return Ok(std::vec![(name, text)]);
    };
    let dir: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Vec::new();
    for e in vms.get_ref().as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default() {
        if let Some(rel) = e.get_ref().as_str() {
            let p = dir.join(rel);
            let display = p.display().to_string();
            out.push((display.clone(), read(&p, &display)?));
        }
    }
    Ok(out)
}

/// Parses a system file from disk; VM files are found relative to its directory.
pub fn parse_system_file(path: &Path) -> Result<SystemConfig, ConfigErrors> {
    let name = path.display().to_string();
    let text = read(path, &name)?;
    let dir: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut load = |rel: &str| -> Result<(String, String), String> {
        let p = dir.join(rel);
        let display = p.display().to_string();
        fs::read_to_string(&p).map(|t| (display.clone(), t)).map_err(|e| format!("{display}: {e}"))
    };
    parse_system_str(&name, &text, &mut load)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Part;

    const GOOD: &str = r#"# a test VM
[base]
id = 1
name = "test"
vm_type = 1
cpu_num = 2
phys_cpu_ids = [0, 1]

[kernel]
entry_point = 0x4008_0000
image_location = "memory"
kernel_path = "guest.bin"
kernel_load_addr = 0x4008_0000
dtb_path = "guest.dtb"
dtb_load_addr = 0x4000_0000
cmdline = "console=ttyAMA0"
memory_regions = [
    [0x4000_0000, 0x100_0000, 0x7, 0],
    [0x5000_0000, 0x10_0000, 0x3, 1],
]

[devices]
interrupt_mode = "emu"
emu_devices = [
    ["gicd", 0x0800_0000, 0x1_0000, 0, 0x1, []],
    ["uart0", 0x0900_0000, 0x1000, 33, 0x2, []],
]
passthrough_devices = [
    ["rtc", 0x0901_0000, 0x0901_0000, 0x1000, 34],
]
passthrough_addresses = [
    [0x0a00_0000, 0x1000],
]
excluded_devices = [["/pcie@10000000"]]

[capvisor]
unhandled_mmio = "abort"
gic_irq_lines = 128
vcpu_priority = 100
gic_cpu_interface = [0x0801_0000, 0x0804_0000, 0x2000]
"#;

    /// GOOD with each `(from, to)` replaced once (each `from` must occur).
    fn with(edits: &[(&str, &str)]) -> String {
        let mut s = String::from(GOOD);
        for (from, to) in edits {
            assert!(s.contains(from), "test edit {from:?} does not apply");
            s = s.replacen(from, to, 1);
        }
        s
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse_vm_str("vm.toml", text) {
            Ok(vm) => panic!("parsed: {vm:?}"),
            Err(e) => e.0,
        }
    }

    /// The single error of `text`; checks it names the file and the line holding `at`.
    fn only(text: &str, at: &str) -> ConfigError {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
        let e = e.into_iter().next().unwrap();
        assert_eq!(e.file, "vm.toml");
        let want = text.lines().position(|l| l.contains(at)).expect("marker line") + 1;
        assert_eq!(e.line, want, "line of {e}");
        assert!(e.to_string().starts_with(&format!("vm.toml:{want}:")), "{e}");
        e
    }

    #[test]
    fn the_good_config_parses_to_what_it_says() {
        let vm = parse_vm_str("vm.toml", GOOD).unwrap();
        assert_eq!((vm.id, vm.name.as_str(), vm.cpu_num), (1, "test", 2));
        assert_eq!(vm.phys_cpu_ids, [0, 1]);
        assert_eq!(vm.entry_point, GuestPhysAddr(0x4008_0000));
        assert_eq!(vm.kernel, Image { path: "guest.bin".into(), load_addr: GuestPhysAddr(0x4008_0000) });
        assert_eq!(vm.dtb.as_ref().unwrap().load_addr, GuestPhysAddr(0x4000_0000));
        assert_eq!(vm.cmdline.as_deref(), Some("console=ttyAMA0"));
        assert_eq!(vm.memory.len(), 2);
        assert_eq!(vm.memory[1].range, GuestRange::new(0x5000_0000, 0x10_0000));
        assert_eq!(vm.memory[1].map, MapType::Identical);
        assert_eq!(vm.memory[1].flags, MemFlags(3));
        assert_eq!(vm.interrupt_mode, InterruptMode::Emulated);
        assert_eq!(vm.emulated[1].kind, EmulatedKind::Console);
        assert_eq!(vm.emulated[1].irq, 33);
        let gicc = vm.capvisor.gic_cpu_interface.unwrap();
        assert_eq!((gicc.guest.base.0, gicc.host.0, gicc.guest.size_bytes), (0x0801_0000, 0x0804_0000, 0x2000));
        let rtc = vm.passthrough[0].region.unwrap();
        assert_eq!((rtc.guest.base.0, rtc.host.0, vm.passthrough[0].irq), (0x0901_0000, 0x0901_0000, 34));
        assert_eq!(vm.passthrough_addresses, [GuestRange::new(0x0a00_0000, 0x1000)]);
        assert_eq!(vm.excluded_devices, ["/pcie@10000000"]);
        assert_eq!(vm.capvisor.unhandled_mmio, UnhandledMmio::InjectAbort);
    }

    #[test]
    fn entries_may_be_tables_and_selectors_may_be_bare_names() {
        let vm = parse_vm_str(
            "vm.toml",
            &with(&[
                (
                    "[0x4000_0000, 0x100_0000, 0x7, 0],",
                    "{ gpa = 0x4000_0000, size = 0x100_0000, flags = 0x7, map_type = 0 },",
                ),
                (
                    r#"["rtc", 0x0901_0000, 0x0901_0000, 0x1000, 34],"#,
                    r#"["rtc", 0x0901_0000, 0x0901_0000, 0x1000, 34], ["/"],"#,
                ),
            ]),
        )
        .unwrap();
        assert_eq!(vm.memory[0].range, GuestRange::new(0x4000_0000, 0x100_0000));
        assert_eq!(vm.passthrough[1], PassthroughDevice { name: "/".into(), region: None, irq: 0 });
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = only(&with(&[("cpu_num = 2", "cpu_num = = 2")]), "cpu_num");
        assert!(matches!(e.kind, ErrorKind::Syntax(_)), "{e}");
        assert_eq!(e.field, "");
    }

    #[test]
    fn unknown_keys_are_errors_at_the_key() {
        let e = only(&with(&[("cpu_num = 2", "cpu_numb = 2\ncpu_num = 2")]), "cpu_numb");
        assert_eq!((e.field.as_str(), &e.kind), ("base.cpu_numb", &ErrorKind::UnknownKey));
        let e = only(&with(&[("[capvisor]", "[capvisr]")]), "[capvisr]");
        assert_eq!(e.field, "capvisr");
        let e = only(&with(&[("vcpu_priority = 100", "vcpu_priority = 100\nspeed = 1")]), "speed");
        assert_eq!(e.field, "capvisor.speed");
        let e = only(
            &with(&[(
                "0x4000_0000, 0x100_0000, 0x7, 0],",
                "0x4000_0000, 0x100_0000, 0x7, 0],\n    { gpa = 0x6000_0000, size = 0x1000, flags = 7, map_type = 0, colour = 1 },",
            )]),
            "colour",
        );
        assert_eq!(e.field, "kernel.memory_regions[1].colour");
    }

    #[test]
    fn missing_keys_are_reported_at_their_table() {
        let e = only(&with(&[("cpu_num = 2\n", "")]), "[base]");
        assert_eq!((e.field.as_str(), &e.kind), ("base.cpu_num", &ErrorKind::Missing));
        let e = only(&with(&[("kernel_path = \"guest.bin\"\n", "")]), "[kernel]");
        assert_eq!(e.field, "kernel.kernel_path");
        let e = only(&with(&[("dtb_load_addr = 0x4000_0000\n", "")]), "[kernel]");
        assert_eq!(e.field, "kernel.dtb_load_addr");
        let text = GOOD.replace("[base]", "[bose]");
        let e = errors(&text);
        assert!(e.iter().any(|e| e.field == "base" && e.kind == ErrorKind::Missing && e.line == 1), "{e:?}");
        let e = only(
            &with(&[("{", "{")].map(|_| {
                ("[0x4000_0000, 0x100_0000, 0x7, 0],", "{ gpa = 0x4000_0000, size = 0x100_0000, flags = 7 },")
            })),
            "flags = 7 }",
        );
        assert_eq!((e.field.as_str(), &e.kind), ("kernel.memory_regions[0].map_type", &ErrorKind::Missing));
    }

    #[test]
    fn wrong_types_and_ranges_name_the_field() {
        let e = only(&with(&[("cpu_num = 2", "cpu_num = \"two\"")]), "cpu_num");
        assert_eq!(e.kind, ErrorKind::WrongType { expected: "an integer", found: "a string" });
        assert_eq!(e.field, "base.cpu_num");
        let e = only(&with(&[("id = 1", "id = -1")]), "id = -1");
        assert_eq!(e.kind, ErrorKind::OutOfRange { value: "-1".into(), max: u32::MAX.into() });
        let e = only(&with(&[("cpu_num = 2", "cpu_num = 300")]), "cpu_num");
        assert!(matches!(e.kind, ErrorKind::OutOfRange { max: 255, .. }));
        let e = only(&with(&[("name = \"test\"", "name = 7")]), "name = 7");
        assert_eq!(e.field, "base.name");
        let e = only(&with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0000, \"big\", 0x3, 1]")]), "\"big\"");
        assert_eq!(e.field, "kernel.memory_regions[1].size");
        let e = only(&with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0000, 0x10_0000, 0x3]")]), "0x5000_0000");
        assert_eq!(e.field, "kernel.memory_regions[1]");
        assert!(matches!(e.kind, ErrorKind::WrongLength { found: 3, .. }));
        let e = only(&with(&[("interrupt_mode = \"emu\"", "interrupt_mode = \"sometimes\"")]), "interrupt_mode");
        assert!(matches!(e.kind, ErrorKind::UnknownValue { .. }));
        let e = only(&with(&[("unhandled_mmio = \"abort\"", "unhandled_mmio = \"ignore\"")]), "unhandled_mmio");
        assert_eq!(e.field, "capvisor.unhandled_mmio");
        let e = only(&with(&[("image_location = \"memory\"", "image_location = \"cloud\"")]), "image_location");
        assert_eq!(e.field, "kernel.image_location");
        let e = errors(&with(&[("# a test VM\n[base]", "base = 3\n[bse]")]));
        assert!(e.iter().any(|e| e.field == "base"
            && e.line == 1
            && e.kind == ErrorKind::WrongType { expected: "a table", found: "an integer" }));
    }

    #[test]
    fn populate_ram_takes_two_values_and_on_touch_refuses_passthrough() {
        let vm = parse_vm_str("vm.toml", GOOD).unwrap();
        assert_eq!(vm.capvisor.populate_ram, PopulateRam::Eager, "the default");
        let e = only(&with(&[("unhandled_mmio = \"abort\"\n", "populate_ram = \"lazily\"\n")]), "populate_ram");
        assert_eq!(e.field, "capvisor.populate_ram");
        assert!(matches!(e.kind, ErrorKind::UnknownValue { .. }), "{e}");
        // GOOD has a passthrough device and address range: DMA could land in untouched RAM.
        let on_touch = [("unhandled_mmio = \"abort\"\n", "populate_ram = \"on_touch\"\n")];
        check(&with(&on_touch), "populate_ram", "capvisor.populate_ram", ProblemKind::OnTouchWithPassthrough);
        let without_passthrough = with(&[
            on_touch[0],
            ("    [\"rtc\", 0x0901_0000, 0x0901_0000, 0x1000, 34],\n", ""),
            ("    [0x0a00_0000, 0x1000],\n", ""),
        ]);
        let vm = parse_vm_str("vm.toml", &without_passthrough).unwrap();
        assert_eq!(vm.capvisor.populate_ram, PopulateRam::OnTouch);
        // Only the range: still refused.
        let only_range = with(&[on_touch[0], ("    [\"rtc\", 0x0901_0000, 0x0901_0000, 0x1000, 34],\n", "")]);
        check(&only_range, "populate_ram", "capvisor.populate_ram", ProblemKind::OnTouchWithPassthrough);
    }

    #[test]
    fn on_reset_and_reboot_limit_parse_and_their_bad_values_are_named_at_their_position() {
        let vm = parse_vm_str("vm.toml", GOOD).unwrap();
        assert_eq!((vm.capvisor.on_reset, vm.capvisor.reboot_limit), (OnReset::Reboot, None), "the defaults");
        let vm = parse_vm_str("vm.toml", &with(&[("vcpu_priority = 100", "vcpu_priority = 100\non_reset = \"stop\"")]))
            .unwrap();
        assert_eq!((vm.capvisor.on_reset, vm.capvisor.reboot_limit), (OnReset::Stop, None));
        let both = "vcpu_priority = 100\non_reset = \"reboot\"\nreboot_limit = 20";
        let vm = parse_vm_str("vm.toml", &with(&[("vcpu_priority = 100", both)])).unwrap();
        assert_eq!((vm.capvisor.on_reset, vm.capvisor.reboot_limit), (OnReset::Reboot, Some(20)));
        let vm = parse_vm_str("vm.toml", &with(&[("vcpu_priority = 100", "reboot_limit = 0xffff_ffff")])).unwrap();
        assert_eq!(vm.capvisor.reboot_limit, Some(u32::MAX));

        // (the replacement of `vcpu_priority = 100`, the error's column, its kind)
        let cases: [(&str, usize, ErrorKind); 7] = [
            (
                "on_reset = \"restart\"",
                12,
                ErrorKind::UnknownValue { value: "restart".into(), expected: "\"reboot\", \"stop\"" },
            ),
            ("on_reset = true", 12, ErrorKind::WrongType { expected: "a string", found: "a boolean" }),
            ("reboot_limit = \"20\"", 16, ErrorKind::WrongType { expected: "an integer", found: "a string" }),
            ("reboot_limit = -1", 16, ErrorKind::OutOfRange { value: "-1".into(), max: u32::MAX.into() }),
            (
                "reboot_limit = 0x1_0000_0000",
                16,
                ErrorKind::OutOfRange { value: "0x1_0000_0000".into(), max: u32::MAX.into() },
            ),
            ("reboot_limit = 0", 16, ErrorKind::Check(ProblemKind::ZeroRebootLimit)),
            ("on_reset = \"stop\"\nreboot_limit = 5", 16, ErrorKind::Check(ProblemKind::RebootLimitWithStop)),
        ];
        for (line, column, kind) in cases {
            let text = with(&[("vcpu_priority = 100", line)]);
            let at = line.lines().last().unwrap();
            let e = only(&text, at);
            let field = if at.starts_with("on_reset") { "capvisor.on_reset" } else { "capvisor.reboot_limit" };
            assert_eq!(e.field, field, "{e}");
            assert_eq!(e.column, column, "{e}");
            assert_eq!(e.kind, kind, "{e}");
        }
        let e = only(&with(&[("vcpu_priority = 100", "on_reboot = \"stop\"")]), "on_reboot");
        assert_eq!((e.field.as_str(), e.kind), ("capvisor.on_reboot", ErrorKind::UnknownKey));
    }

    fn check(text: &str, at: &str, field: &str, kind: ProblemKind) {
        let e = only(text, at);
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.kind, ErrorKind::Check(kind), "{e}");
    }

    #[test]
    fn base_rules() {
        check(
            &with(&[("cpu_num = 2", "cpu_num = 0"), ("phys_cpu_ids = [0, 1]\n", "")]),
            "cpu_num",
            "base.cpu_num",
            ProblemKind::NoCpus,
        );
        check(
            &with(&[("cpu_num = 2", "cpu_num = 9"), ("phys_cpu_ids = [0, 1]\n", "")]),
            "cpu_num",
            "base.cpu_num",
            ProblemKind::TooManyCpus(9),
        );
        check(
            &with(&[("phys_cpu_ids = [0, 1]", "phys_cpu_ids = [0]")]),
            "phys_cpu_ids",
            "base.phys_cpu_ids",
            ProblemKind::PhysCpuIdsLength { expected: 2, found: 1 },
        );
        check(
            &with(&[("phys_cpu_ids = [0, 1]", "phys_cpu_ids = [0x100, 0x100]")]),
            "phys_cpu_ids",
            "base.phys_cpu_ids[1]",
            ProblemKind::DuplicatePhysCpuId(0x100),
        );
        let e = only(&with(&[("name = \"test\"", "name = \"a b\"")]), "name =");
        assert!(matches!(e.kind, ErrorKind::Check(ProblemKind::BadName(_))));
        check(&with(&[("vm_type = 1", "vm_type = 7")]), "vm_type", "base.vm_type", ProblemKind::UnknownVmType(7));
    }

    #[test]
    fn memory_rules() {
        check(
            &with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0000, 0x10_0000, 0x3, 3]")]),
            "0x5000_0000",
            "kernel.memory_regions[1].map_type",
            ProblemKind::UnknownMapType(3),
        );
        check(
            &with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0000, 0, 0x3, 1]")]),
            "0x5000_0000",
            "kernel.memory_regions[1].size",
            ProblemKind::ZeroSize,
        );
        check(
            &with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0800, 0x10_0000, 0x3, 1]")]),
            "0x5000_0800",
            "kernel.memory_regions[1].gpa",
            ProblemKind::Misaligned { value: 0x5000_0800, align: 0x1000 },
        );
        check(
            &with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0000, 0x10_0000, 0x40, 1]")]),
            "0x5000_0000",
            "kernel.memory_regions[1].flags",
            ProblemKind::UnknownFlags(0x40),
        );
        check(
            &with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5000_0000, 0x10_0000, 0x2, 1]")]),
            "0x5000_0000",
            "kernel.memory_regions[1].flags",
            ProblemKind::MemoryNotReadable,
        );
        check(
            &with(&[("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x40ff_0000, 0x10_0000, 0x3, 1]")]),
            "0x40ff_0000",
            "kernel.memory_regions[1]",
            ProblemKind::Overlaps {
                range: GuestRange::new(0x40ff_0000, 0x10_0000),
                other: Field::Memory(0, Part::Whole),
                other_range: GuestRange::new(0x4000_0000, 0x100_0000),
            },
        );
        let e = only(
            &with(&[("    [0x4000_0000, 0x100_0000, 0x7, 0],\n    [0x5000_0000, 0x10_0000, 0x3, 1],\n", "")]),
            "memory_regions",
        );
        assert_eq!(e.kind, ErrorKind::Check(ProblemKind::NoMemory));
    }

    #[test]
    fn entry_and_images_must_be_in_memory() {
        check(
            &with(&[("entry_point = 0x4008_0000", "entry_point = 0x3000_0000")]),
            "entry_point",
            "kernel.entry_point",
            ProblemKind::OutsideMemory(0x3000_0000),
        );
        check(
            &with(&[("entry_point = 0x4008_0000", "entry_point = 0x4008_0002")]),
            "entry_point",
            "kernel.entry_point",
            ProblemKind::EntryMisaligned(0x4008_0002),
        );
        check(
            &with(&[("kernel_load_addr = 0x4008_0000", "kernel_load_addr = 0x9000_0000")]),
            "kernel_load_addr",
            "kernel.kernel_load_addr",
            ProblemKind::OutsideMemory(0x9000_0000),
        );
        check(
            &with(&[("dtb_load_addr = 0x4000_0000", "dtb_load_addr = 0x5010_0000")]),
            "dtb_load_addr",
            "kernel.dtb_load_addr",
            ProblemKind::OutsideMemory(0x5010_0000),
        );
    }

    #[test]
    fn device_rules() {
        let e = only(
            &with(&[(
                r#"["uart0", 0x0900_0000, 0x1000, 33, 0x2, []]"#,
                r#"["blk", 0x0900_0000, 0x1000, 33, 0xE1, []]"#,
            )]),
            "blk",
        );
        assert_eq!(
            (e.field.as_str(), e.kind),
            ("devices.emu_devices[1].emu_type", ErrorKind::Check(ProblemKind::UnsupportedDevice(0xe1)))
        );
        check(
            &with(&[("0x0900_0000, 0x1000, 33", "0x0900_0000, 0x100, 33")]),
            "uart0",
            "devices.emu_devices[1].length",
            ProblemKind::DeviceTooSmall { min: 0x1000 },
        );
        check(
            &with(&[("0x0900_0000, 0x1000, 33", "0x4000_0000, 0x1000, 33")]),
            "uart0",
            "devices.emu_devices[1]",
            ProblemKind::Overlaps {
                range: GuestRange::new(0x4000_0000, 0x1000),
                other: Field::Memory(0, Part::Whole),
                other_range: GuestRange::new(0x4000_0000, 0x100_0000),
            },
        );
        check(
            &with(&[("0x0900_0000, 0x1000, 33", "0x0800_f000, 0x1000, 33")]),
            "uart0",
            "devices.emu_devices[1]",
            ProblemKind::Overlaps {
                range: GuestRange::new(0x0800_f000, 0x1000),
                other: Field::Emulated(0, Part::Whole),
                other_range: GuestRange::new(0x0800_0000, 0x1_0000),
            },
        );
        check(
            &with(&[("0x1000, 33, 0x2", "0x1000, 200, 0x2")]),
            "uart0",
            "devices.emu_devices[1].irq_id",
            ProblemKind::IrqOutOfRange { irq: 200, lines: 128 },
        );
        check(
            &with(&[("0x1000, 33, 0x2", "0x1000, 7, 0x2")]),
            "uart0",
            "devices.emu_devices[1].irq_id",
            ProblemKind::IrqOutOfRange { irq: 7, lines: 128 },
        );
        check(
            &with(&[("0x1000, 34]", "0x1000, 33]")]),
            "\"rtc\"",
            "devices.passthrough_devices[0].irq_id",
            ProblemKind::DuplicateIrq { irq: 33, other: Field::Emulated(1, Part::Element(3)) },
        );
        check(
            &with(&[(
                r#"["uart0", 0x0900_0000, 0x1000, 33, 0x2, []]"#,
                r#"["gicd2", 0x0900_0000, 0x1000, 0, 0x1, []]"#,
            )]),
            "gicd2",
            "devices.emu_devices[1].emu_type",
            ProblemKind::DuplicateInterruptController,
        );
        check(
            &with(&[("interrupt_mode = \"emu\"", "interrupt_mode = \"no_irq\""), ("0x1000, 34]", "0x1000, 0]")]),
            "uart0",
            "devices.emu_devices[1].irq_id",
            ProblemKind::IrqButNoIrqMode,
        );
        check(
            &with(&[("0x0901_0000, 0x0901_0000", "0x0901_0000, 0x0901_0800")]),
            "rtc",
            "devices.passthrough_devices[0].base_hpa",
            ProblemKind::Misaligned { value: 0x0901_0800, align: 0x1000 },
        );
        check(
            &with(&[("[0x0a00_0000, 0x1000]", "[0x0901_0000, 0x1000]")]),
            "0x0901_0000, 0x1000]",
            "devices.passthrough_addresses[0]",
            ProblemKind::Overlaps {
                range: GuestRange::new(0x0901_0000, 0x1000),
                other: Field::Passthrough(0, Part::Whole),
                other_range: GuestRange::new(0x0901_0000, 0x1000),
            },
        );
        check(
            &with(&[("gic_cpu_interface = [0x0801_0000", "gic_cpu_interface = [0x0900_0000")]),
            "gic_cpu_interface",
            "capvisor.gic_cpu_interface",
            ProblemKind::Overlaps {
                range: GuestRange::new(0x0900_0000, 0x2000),
                other: Field::Emulated(1, Part::Whole),
                other_range: GuestRange::new(0x0900_0000, 0x1000),
            },
        );
    }

    /// GOOD with a GICv3 in place of its GICv2 (and no GICC).
    fn gicv3_with(edits: &[(&str, &str)]) -> String {
        let mut all = alloc::vec![
            (
                r#"["gicd", 0x0800_0000, 0x1_0000, 0, 0x1, []],"#,
                "[\"gicd\", 0x0800_0000, 0x1_0000, 0, 0x21, []],\n    [\"gicr\", 0x080a_0000, 0x4_0000, 0, 0x20, [2, 0x2_0000, 0]],",
            ),
            ("gic_cpu_interface = [0x0801_0000, 0x0804_0000, 0x2000]\n", ""),
        ];
        all.extend_from_slice(edits);
        with(&all)
    }

    #[test]
    fn gicv3_rules_name_the_line() {
        let vm = parse_vm_str("vm.toml", &gicv3_with(&[])).unwrap();
        assert_eq!(vm.gic_version(), crate::GicVersion::V3);
        check(
            &gicv3_with(&[("0x080a_0000, 0x4_0000", "0x080a_0000, 0x6_0000")]),
            "\"gicr\"",
            "devices.emu_devices[1].length",
            ProblemKind::RedistributorSize { size: 0x6_0000, cpus: 2 },
        );
        check(
            &gicv3_with(&[("[2, 0x2_0000, 0]", "[3, 0x2_0000, 0]")]),
            "\"gicr\"",
            "devices.emu_devices[1].cfg_list",
            ProblemKind::RedistributorCfg { what: "cfg_list[0] (cpu_num)", found: 3, expected: 2 },
        );
        check(
            &gicv3_with(&[(
                "vcpu_priority = 100\n",
                "vcpu_priority = 100\ngic_cpu_interface = [0x0801_0000, 0x0804_0000, 0x2000]\n",
            )]),
            "gic_cpu_interface",
            "capvisor.gic_cpu_interface",
            ProblemKind::GicCpuInterfaceWithV3,
        );
        check(
            &gicv3_with(&[(
                r#"["uart0", 0x0900_0000, 0x1000, 33, 0x2, []]"#,
                r#"["gicd2", 0x0900_0000, 0x1000, 0, 0x1, []]"#,
            )]),
            "gicd2",
            "devices.emu_devices[2].emu_type",
            ProblemKind::DuplicateInterruptController,
        );
    }

    #[test]
    fn capvisor_table_rules() {
        check(
            &with(&[("gic_irq_lines = 128", "gic_irq_lines = 100")]),
            "gic_irq_lines",
            "capvisor.gic_irq_lines",
            ProblemKind::BadIrqLines(100),
        );
        check(
            &with(&[("vcpu_priority = 100", "vcpu_priority = 254")]),
            "vcpu_priority",
            "capvisor.vcpu_priority",
            ProblemKind::BadPriority(254),
        );
    }

    #[test]
    fn flash_banks_and_their_images_are_checked_by_line_and_field() {
        let flash = r#"["uart0", 0x0900_0000, 0x1000, 33, 0x2, []],
    ["flash1", 0x0400_0000, 0x0400_0000, 0, 0xC0, [1]],
    ["rtc", 0x0903_0000, 0x1000, 40, 0xC1, []],"#;
        let good = with(&[(r#"["uart0", 0x0900_0000, 0x1000, 33, 0x2, []],"#, flash)]);
        let good = good.replacen(
            "unhandled_mmio = \"abort\"",
            "unhandled_mmio = \"abort\"\nflash_images = [[\"flash1\", \"vars.fd\"]]",
            1,
        );
        let vm = parse_vm_str("vm.toml", &good).unwrap_or_else(|e| panic!("{e}"));
        let bank = vm.emulated.iter().find(|d| d.kind == EmulatedKind::CfiFlash).unwrap();
        assert!(bank.writable());
        assert_eq!(vm.flash_images, [FlashImage { device: "flash1".into(), path: "vars.fd".into() }]);
        assert!(vm.emulated.iter().any(|d| d.kind == EmulatedKind::Rtc));
        // An image for a device that is no flash bank, at the key's line.
        check(
            &good.replace(r#"[["flash1", "vars.fd"]]"#, r#"[["uart0", "vars.fd"]]"#),
            "flash_images",
            "capvisor.flash_images",
            ProblemKind::NotAFlash("uart0".into()),
        );
        // A bank whose size is not a power of two, at its element.
        let e = only(&good.replace("0x0400_0000, 0, 0xC0", "0x0300_0000, 0, 0xC0"), "\"flash1\"");
        assert_eq!(e.field, "devices.emu_devices[2].length", "{e}");
        assert_eq!(e.kind, ErrorKind::Check(ProblemKind::FlashSize(0x0300_0000)), "{e}");
    }

    #[test]
    fn axvisor_features_capvisor_lacks_are_named() {
        let e = only(&with(&[("cmdline", "bios_path = \"x.bin\"\ncmdline")]), "bios_path");
        assert!(matches!(e.kind, ErrorKind::Unsupported(_)));
        let e = only(&with(&[("cmdline", "disk_path = \"disk.img\"\ncmdline")]), "disk_path");
        assert_eq!(e.field, "kernel.disk_path");
        let e = only(&with(&[("excluded_devices", "virtual = []\nexcluded_devices")]), "virtual");
        assert_eq!(e.field, "devices.virtual");
    }

    #[test]
    fn several_errors_are_all_reported_in_file_order() {
        let e = errors(&with(&[
            ("id = 1", "id = \"one\""),
            ("cpu_num = 2", "cpu_num = \"two\""),
            ("gic_irq_lines = 128", "gic_irq_lines = \"many\""),
        ]));
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["base.id", "base.cpu_num", "capvisor.gic_irq_lines"]);
        assert!(e.windows(2).all(|w| w[0].line < w[1].line));
    }

    #[test]
    fn the_remaining_error_paths_name_file_line_and_field() {
        // (edits to GOOD, text on the error's line, field)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (&[("cmdline", "ramdisk_path = \"initrd\"\ncmdline")], "[kernel]", "kernel.ramdisk_load_addr"),
            (&[("vm_type = 1", "guest_type = \"hosted\"")], "guest_type", "base.guest_type"),
            (
                &[("phys_cpu_ids = [0, 1]", "phys_cpu_ids = [0, 1]\nphys_cpu_sets = [\"all\"]")],
                "phys_cpu_sets",
                "base.phys_cpu_sets[0]",
            ),
            (
                &[("excluded_devices = [[\"/pcie@10000000\"]]", "excluded_devices = [\"/pcie\"]")],
                "excluded_devices",
                "devices.excluded_devices[0]",
            ),
            (&[("cmdline", "enable_bios = true\ncmdline")], "enable_bios", "kernel.enable_bios"),
            (&[("cmdline", "boot_protocol = \"uefi\"\ncmdline")], "boot_protocol", "kernel.boot_protocol"),
            (&[("0x1000, 33, 0x2, []", "0x1000, 33, 0x2, [\"x\"]")], "uart0", "devices.emu_devices[1].cfg_list[0]"),
            (&[("0x1000, 34],", "0x1000, 34, 5],")], "\"rtc\"", "devices.passthrough_devices[0]"),
            (
                &[(
                    r#"["uart0", 0x0900_0000, 0x1000, 33, 0x2, []],"#,
                    r#"{ name = "uart0", base_gpa = 0x0900_0000, length = 0x1000, irq_id = 33 },"#,
                )],
                "uart0",
                "devices.emu_devices[1].emu_type",
            ),
            (
                &[("excluded_devices", "disabled = [{}]\nexcluded_devices")],
                "disabled = [{}]",
                "devices.disabled[0].path",
            ),
            (
                &[("excluded_devices", "passthrough = [\"/x\"]\nexcluded_devices")],
                "passthrough = ",
                "devices.passthrough[0]",
            ),
            (
                &[(
                    "gic_cpu_interface = [0x0801_0000, 0x0804_0000, 0x2000]",
                    "gic_cpu_interface = [0x0801_0000, 0x0804_0000]",
                )],
                "gic_cpu_interface",
                "capvisor.gic_cpu_interface",
            ),
            (&[("[0x0a00_0000, 0x1000],", "[0x0a00_0000],")], "[0x0a00_0000]", "devices.passthrough_addresses[0]"),
        ];
        for (edits, at, field) in cases {
            let e = only(&with(edits), at);
            assert_eq!(e.field, *field, "{e}");
        }
        // The 0.8 spellings that are right parse.
        let vm = parse_vm_str(
            "vm.toml",
            &with(&[(
                "excluded_devices",
                "passthrough = [{ path = \"/timer\" }]\ndisabled = [{ path = \"/pl061\" }]\nexcluded_devices",
            )]),
        )
        .unwrap();
        assert_eq!(vm.passthrough.last().unwrap().name, "/timer");
        assert_eq!(vm.excluded_devices.last().unwrap(), "/pl061");
    }

    #[test]
    fn unreadable_files_are_named() {
        let e = parse_vm_file(Path::new("/nonexistent/capvisor/vm.toml")).unwrap_err().0;
        assert_eq!((e.len(), e[0].file.as_str()), (1, "/nonexistent/capvisor/vm.toml"));
        assert!(matches!(e[0].kind, ErrorKind::Io(_)));
        let e = parse_system_file(Path::new("/nonexistent/capvisor/system.toml")).unwrap_err().0;
        assert!(matches!(e[0].kind, ErrorKind::Io(_)));
    }

    fn system(files: &[(&str, &str)], main: &str) -> Result<SystemConfig, ConfigErrors> {
        let mut load = |name: &str| -> Result<(String, String), String> {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .ok_or(format!("{name}: not found"))
        };
        parse_system_str("system.toml", main, &mut load)
    }

    #[test]
    fn a_system_lists_vm_files_and_checks_what_they_share() {
        let b = with(&[
            ("id = 1", "id = 2"),
            ("name = \"test\"", "name = \"other\""),
            ("[0x5000_0000, 0x10_0000, 0x3, 1]", "[0x5100_0000, 0x10_0000, 0x3, 1]"),
            (r#"["rtc", 0x0901_0000, 0x0901_0000, 0x1000, 34],"#, ""),
            ("[0x0a00_0000, 0x1000],", ""),
        ]);
        let sys = system(&[("a.toml", GOOD), ("b.toml", &b)], "[system]\nvms = [\"a.toml\", \"b.toml\"]\n").unwrap();
        assert_eq!(sys.vms.len(), 2);
        assert_eq!(sys.vms[1].name, "other");

        // Same id, same name, same identity-mapped RAM, same passthrough device and address:
        // each reported in the second VM's file. (Both map the same GICV: that is allowed.)
        let e =
            system(&[("a.toml", GOOD), ("b.toml", GOOD)], "[system]\nvms = [\"a.toml\", \"b.toml\"]\n").unwrap_err().0;
        assert_eq!(e.len(), 5, "{}", ConfigErrors(e.clone()));
        assert!(e.iter().all(|e| e.file == "b.toml"));
        assert!(
            e.iter().any(|e| e.field == "base.id" && matches!(e.kind, ErrorKind::Check(ProblemKind::DuplicateVm(_))))
        );
        assert!(e.iter().any(|e| e.field == "base.name"));
        let shared = e.iter().find(|e| e.field == "kernel.memory_regions[1]").unwrap();
        assert_eq!(shared.line, GOOD.lines().position(|l| l.contains("0x5000_0000")).unwrap() + 1);

        // A VM file that is missing is reported at its entry in the system file.
        let e = system(&[("a.toml", GOOD)], "[system]\nvms = [\n  \"a.toml\",\n  \"gone.toml\",\n]\n").unwrap_err().0;
        assert_eq!((e[0].file.as_str(), e[0].line, e[0].field.as_str()), ("system.toml", 4, "system.vms"));
        assert_eq!(e[0].kind, ErrorKind::Io("gone.toml: not found".into()));
        // A single VM file is a system of one.
        assert_eq!(system(&[], GOOD).unwrap().vms.len(), 1);
        let e = system(&[], "[system]\nvms = []\nextra = 1\n").unwrap_err().0;
        assert_eq!(e.len(), 2);
    }
}
