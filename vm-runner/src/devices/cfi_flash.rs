//! CFI NOR flash with the Intel/Sharp command set (CFI command set 0x0001), as QEMU's
//! `pflash_cfi01` presents it on the `virt` machine: one bank is two x16 chips side by side
//! on a 32-bit bus (bank width 4, device width 2), with uniform 256 KiB erase blocks. EDK2's
//! `VirtNorFlashDxe` (UEFI variables), Linux's `cfi_probe` + `cfi_cmdset_0001` and U-Boot
//! drive it.
//!
//! Modelled:
//! - read array (`0xFF`, also `0x00` and `0xF0` as QEMU accepts them), read status (`0x70`),
//!   clear status (`0x50`, back to read array as in QEMU), read identifier (`0x90`: Intel
//!   `0x89`, device `0x18` as QEMU's `virt` sets them, and the block lock status at block
//!   offset 2 that EDK2 reads), CFI query (`0x98`, QEMU's table with this bank's geometry);
//! - word program (`0x40` or `0x10`, then the data), buffered program (`0xE8`, the word
//!   count, count + 1 data writes inside one aligned [`WRITE_BUFFER_BYTES`] window, confirm
//!   `0xD0`), block erase (`0x20`, confirm `0xD0` at an address in the block), block lock
//!   and unlock (`0x60`, then `0x01` lock / `0xD0` unlock; `0x2F` lock-down is taken as a
//!   plain lock, `0x03` read-configuration is accepted and ignored).
//! - Programming only clears bits (new = old & data), as NOR cells do; an erased block
//!   reads `0xFF`.
//! - Errors as the status register reports them, sticky until `0x50`: `0x10` program
//!   error, `0x20` erase error, both for a bad command sequence (a second cycle that is
//!   not the expected confirm, a buffer count larger than the buffer), `0x02` with either
//!   for a locked block. A read-only bank refuses program and erase with `0x10` / `0x20`,
//!   as QEMU's read-only pflash does, and its contents never change.
//! - An unknown command puts the bank in read-array mode and is counted, as QEMU does.
//!
//! Not modelled: time. Every operation completes at once and the status register always
//! reads ready (`0x80`; `0x50` clears only the error bits, where QEMU also clears the ready
//! bit); so there is no erase or program suspend (the CFI table says so), no blank check,
//! no protection registers, no buffered-enhanced (`0x80`) programming and no burst reads.
//! Blocks come up unlocked, as QEMU reports them (real parts power up locked).
//!
//! Bus view: a command is the low byte of the written value (the low chip's lane), as in
//! QEMU. Reads outside read-array mode return each chip's 16-bit answer in its own half of
//! each 32-bit bus word (status `0x80` reads `0x0080_0080`), so any size or alignment reads
//! the bytes the two chips would drive. Bytes past the end of the bank read as zero and
//! writes there change nothing.
//!
//! Memory: the image is kept as given (it may be shorter than the bank: the rest reads as
//! erased); a block is copied out of it only when a program changes it, and an erased block
//! is a marker, not 256 KiB of `0xFF`. So the store is bounded by the bank's size whatever
//! the guest does, and the buffered-program window is [`WRITE_BUFFER_BYTES`].
//!
//! Owns the bank's contents and its command state; never touches guest RAM, the stage-2
//! mapping (the VMM may map the bank read-only while [`CfiFlash::in_read_array_mode`]) or
//! the interrupt controller (the device has no interrupt).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// QEMU `virt`'s bank size.
pub const BANK_BYTES: u64 = 64 << 20;
/// QEMU `virt`'s erase block (sector) size, the bank's; each chip holds half of it.
pub const BLOCK_BYTES: u64 = 256 << 10;
/// Bytes on the bus per word: two chips of 16 bits.
pub const BANK_WIDTH: u64 = 4;
/// Chips in the bank.
pub const CHIPS: u64 = 2;
/// Largest bank: the CFI block count is 16 bits (65536 blocks).
pub const MAX_BANK_BYTES: u64 = BLOCK_BYTES << 16;
/// Log2 of one chip's write buffer in bytes (CFI offset 0x2A), as QEMU reports it.
const CHIP_BUFFER_BITS: u8 = 11;
/// The bank's write buffer: one chip's 2 KiB times two (QEMU's `writeblock_size`), so one
/// buffered program covers one aligned window of this size.
pub const WRITE_BUFFER_BYTES: u64 = (1 << CHIP_BUFFER_BITS) * CHIPS;
/// Largest word count a buffered program accepts: one 16-bit word per chip per bus write.
const MAX_BUFFER_COUNT: u64 = WRITE_BUFFER_BYTES / BANK_WIDTH - 1;
/// Manufacturer code (Intel) as QEMU's `virt` sets it (`id0`).
pub const MANUFACTURER_ID: u16 = 0x89;
/// Device code as QEMU's `virt` sets it (`id1`; Intel 28F128J3).
pub const DEVICE_ID: u16 = 0x18;

/// Command bytes (the first or only cycle, unless named as a confirm).
pub mod cmd {
    /// QEMU's alias for read array.
    pub const RESET: u8 = 0x00;
    /// Alternate word program setup.
    pub const PROGRAM_ALT: u8 = 0x10;
    /// Block erase setup.
    pub const ERASE: u8 = 0x20;
    /// Word program setup.
    pub const PROGRAM: u8 = 0x40;
    /// Clear status register.
    pub const CLEAR_STATUS: u8 = 0x50;
    /// Block lock setup.
    pub const LOCK_SETUP: u8 = 0x60;
    /// Second cycle of [`LOCK_SETUP`]: lock the block.
    pub const LOCK: u8 = 0x01;
    /// Second cycle of [`LOCK_SETUP`]: read configuration register (ignored).
    pub const READ_CONFIG: u8 = 0x03;
    /// Second cycle of [`LOCK_SETUP`]: lock down the block (modelled as a lock).
    pub const LOCK_DOWN: u8 = 0x2f;
    /// Read status register.
    pub const READ_STATUS: u8 = 0x70;
    /// Read identifier codes.
    pub const READ_ID: u8 = 0x90;
    /// CFI query.
    pub const QUERY: u8 = 0x98;
    /// Confirm (erase, buffered program) and unlock (after [`LOCK_SETUP`]).
    pub const CONFIRM: u8 = 0xd0;
    /// Buffered program setup.
    pub const BUFFERED_PROGRAM: u8 = 0xe8;
    /// AMD reset, which Linux's probe sends; read array here, as in QEMU.
    pub const AMD_RESET: u8 = 0xf0;
    /// Read array.
    pub const READ_ARRAY: u8 = 0xff;
}

/// Status register bits (one chip's byte).
pub mod sr {
    /// The write state machine is ready (always, here).
    pub const READY: u8 = 0x80;
    /// Erase failed (with [`PROGRAM_ERROR`]: bad command sequence).
    pub const ERASE_ERROR: u8 = 0x20;
    /// Program failed (with [`ERASE_ERROR`]: bad command sequence).
    pub const PROGRAM_ERROR: u8 = 0x10;
    /// The operation was aborted because the block is locked.
    pub const BLOCK_LOCKED: u8 = 0x02;
    /// A bad command sequence.
    pub const SEQUENCE_ERROR: u8 = ERASE_ERROR | PROGRAM_ERROR;
}

/// Length of QEMU's CFI table (the query answers zero beyond it).
pub const CFI_TABLE_LEN: usize = 0x52;

/// Why a bank cannot be made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlashError {
    /// The size is zero, not a power of two (the CFI size field is an exponent), not a
    /// multiple of [`BLOCK_BYTES`], or above [`MAX_BANK_BYTES`].
    BadSize {
        /// The size asked for.
        size_bytes: u64,
    },
    /// The image does not fit the bank.
    ImageTooLarge {
        /// The image's length.
        image_bytes: u64,
        /// The bank's size.
        size_bytes: u64,
    },
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::BadSize { size_bytes } => write!(
                f,
                "flash bank of {size_bytes:#x} bytes: the size must be a power of two, a multiple of the \
                 {BLOCK_BYTES:#x}-byte erase block and at most {MAX_BANK_BYTES:#x}"
            ),
            FlashError::ImageTooLarge { image_bytes, size_bytes } => {
                write!(f, "flash image of {image_bytes:#x} bytes does not fit a bank of {size_bytes:#x} bytes")
            }
        }
    }
}

impl core::error::Error for FlashError {}

/// Counters for the VMM's report.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FlashStats {
    /// Word and buffered programs carried out.
    pub programs: u64,
    /// Blocks erased.
    pub erases: u64,
    /// Programs and erases refused: read-only bank or locked block.
    pub refused: u64,
    /// Unknown commands and bad command sequences (wrong confirm, buffer count too large,
    /// data outside the buffer window, addresses past the bank).
    pub bad_sequences: u64,
}

/// What the bank does with the next access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Reads return contents.
    ReadArray,
    /// Reads return the status register; also the state after every operation.
    Status,
    /// Reads return identifier codes and lock status.
    Identify,
    /// Reads return the CFI table.
    Query,
    /// The next write is the data of a word program.
    ProgramSetup,
    /// The next write must confirm an erase.
    EraseSetup,
    /// The next write says lock, unlock or lock-down.
    LockSetup,
    /// The next write is the word count of a buffered program.
    BufferCount,
    /// `remaining` data writes to go; the window is fixed by the first one.
    BufferData { window: Option<u64>, remaining: u64, failed: bool },
    /// The next write must confirm the buffered program.
    BufferConfirm { window: Option<u64>, failed: bool },
}

/// One erase block that differs from the image.
#[derive(Clone, Debug)]
enum Block {
    /// All `0xFF`.
    Erased,
    /// Its contents, [`BLOCK_BYTES`] long.
    Bytes(Vec<u8>),
}

/// A change to a bank whose contents live outside the model ([`CfiFlash::keep_outside`]),
/// for its keeper to apply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FlashOp {
    /// Program: each byte at `offset + i` becomes `old & bytes[i]`.
    Program {
        /// Offset in the bank.
        offset: u64,
        /// The data.
        bytes: Vec<u8>,
    },
    /// Erase: the block reads `0xFF`.
    Erase {
        /// The block's index ([`BLOCK_BYTES`] each).
        block: u32,
    },
}

/// One emulated flash bank.
#[derive(Clone, Debug)]
pub struct CfiFlash {
    /// The contents live outside the model: changes are handed out as [`FlashOp`]s.
    outside: bool,
    /// Changes not yet taken ([`CfiFlash::take_ops`]); one command's worth at most.
    ops: Vec<FlashOp>,
    size_bytes: u64,
    writable: bool,
    image: Vec<u8>,
    /// Blocks programmed or erased since the image was loaded.
    blocks: BTreeMap<u32, Block>,
    /// Blocks changed since [`CfiFlash::take_dirty`] last asked (a copy of the contents
    /// elsewhere, the VMM's read-only mapping of the bank, needs them).
    dirty: BTreeSet<u32>,
    /// One bit per block: locked.
    locked: Vec<u64>,
    mode: Mode,
    status: u8,
    /// The buffered program's staging window, [`WRITE_BUFFER_BYTES`] once used.
    buffer: Vec<u8>,
    cfi: [u8; CFI_TABLE_LEN],
    stats: FlashStats,
}

impl CfiFlash {
    /// A bank of `size_bytes` holding `image` (shorter than the bank: the rest reads as
    /// erased `0xFF`), writable or read-only, in read-array mode with every block unlocked.
    pub fn new(size_bytes: u64, image: Vec<u8>, writable: bool) -> Result<Self, FlashError> {
        let blocks = size_bytes / BLOCK_BYTES;
        if !size_bytes.is_power_of_two() || !size_bytes.is_multiple_of(BLOCK_BYTES) || size_bytes > MAX_BANK_BYTES {
            return Err(FlashError::BadSize { size_bytes });
        }
        let image_bytes = image.len() as u64;
        if image_bytes > size_bytes {
            return Err(FlashError::ImageTooLarge { image_bytes, size_bytes });
        }
        Ok(CfiFlash {
            outside: false,
            ops: Vec::new(),
            size_bytes,
            writable,
            image,
            blocks: BTreeMap::new(),
            dirty: BTreeSet::new(),
            locked: vec![0; blocks.div_ceil(64) as usize],
            mode: Mode::ReadArray,
            status: sr::READY,
            buffer: Vec::new(),
            cfi: cfi_table(size_bytes),
            stats: FlashStats::default(),
        })
    }

    /// The bank's size.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// From now on the contents live outside the model (the VMM's memory, which the guest
    /// reads in place): program and erase become [`FlashOp`]s ([`CfiFlash::take_ops`]) and
    /// reads of contents answer `0xFF`. The image given to [`CfiFlash::new`] is dropped:
    /// the keeper holds it. The model's memory then stays bounded whatever the guest does.
    pub fn keep_outside(&mut self) {
        self.outside = true;
        self.image = Vec::new();
        self.blocks.clear();
    }

    /// The changes made since the last call, in order; clears them.
    pub fn take_ops(&mut self) -> Vec<FlashOp> {
        core::mem::take(&mut self.ops)
    }

    /// The erase blocks (by index, each [`BLOCK_BYTES`] long) whose contents changed since
    /// the last call; clears the set.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        core::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Whether the guest may program and erase it.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the bank is in read-array mode (reads return contents).
    pub fn in_read_array_mode(&self) -> bool {
        self.mode == Mode::ReadArray
    }

    /// Counters for the VMM's report.
    pub fn stats(&self) -> FlashStats {
        self.stats
    }

    /// Heap bytes held for blocks the guest has programmed (the image aside); at most the
    /// bank's size.
    pub fn stored_bytes(&self) -> u64 {
        self.blocks.values().map(|b| if let Block::Bytes(v) = b { v.len() as u64 } else { 0 }).sum()
    }

    /// The bank's contents at `offset`, whatever mode it is in (for the VMM: saving
    /// variables, tests); bytes past the end read as zero.
    pub fn contents(&self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = offset.checked_add(i as u64).filter(|&a| a < self.size_bytes).map_or(0, |a| self.byte_at(a));
        }
    }

    /// A reset of the machine: read-array mode, no errors, every block unlocked, a
    /// half-done buffered program dropped. Contents stay.
    pub fn reset(&mut self) {
        self.mode = Mode::ReadArray;
        self.status = sr::READY;
        self.locked.iter_mut().for_each(|w| *w = 0);
    }

    /// A guest read of `size` bytes (1 to 8) at `offset` from the bank's base, little-endian.
    /// Other sizes read as zero.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        let mut v = 0u64;
        for i in 0..access_bytes(size) {
            let Some(a) = offset.checked_add(i) else { break };
            v |= u64::from(self.bus_byte(a)) << (8 * i);
        }
        v
    }

    /// A guest write of `size` bytes (1 to 8) at `offset` from the bank's base,
    /// little-endian. Writes of other sizes are ignored.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) {
        let n = access_bytes(size);
        if n == 0 {
            return;
        }
        let value = if n >= 8 { value } else { value & ((1u64 << (8 * n)) - 1) };
        let cmd = value as u8;
        match self.mode {
            Mode::ReadArray | Mode::Status | Mode::Identify | Mode::Query => self.command(cmd),
            Mode::ProgramSetup => self.program_word(offset, n, value),
            Mode::EraseSetup => match cmd {
                cmd::CONFIRM => self.erase(offset),
                cmd::READ_ARRAY => self.mode = Mode::ReadArray,
                _ => self.sequence_error(),
            },
            Mode::LockSetup => match cmd {
                cmd::LOCK | cmd::LOCK_DOWN => self.set_lock(offset, true),
                cmd::CONFIRM => self.set_lock(offset, false),
                cmd::READ_CONFIG => self.mode = Mode::Status,
                cmd::READ_ARRAY => self.mode = Mode::ReadArray,
                _ => self.sequence_error(),
            },
            Mode::BufferCount => {
                // Each chip takes its own count; the low chip's decides, as in QEMU.
                let count = value & 0xffff;
                if count > MAX_BUFFER_COUNT {
                    self.sequence_error();
                } else {
                    self.buffer.clear();
                    self.buffer.resize(WRITE_BUFFER_BYTES as usize, 0xff);
                    self.mode = Mode::BufferData { window: None, remaining: count + 1, failed: false };
                }
            }
            Mode::BufferData { window, remaining, failed } => {
                let window = window.or(Some(offset & !(WRITE_BUFFER_BYTES - 1)));
                let failed = failed || !self.stage(window, offset, n, value);
                let remaining = remaining.saturating_sub(1);
                self.mode = if remaining == 0 {
                    Mode::BufferConfirm { window, failed }
                } else {
                    Mode::BufferData { window, remaining, failed }
                };
            }
            Mode::BufferConfirm { window, failed } => {
                if cmd != cmd::CONFIRM {
                    self.sequence_error();
                } else if failed {
                    self.status |= sr::PROGRAM_ERROR;
                    self.stats.bad_sequences = self.stats.bad_sequences.saturating_add(1);
                    self.mode = Mode::Status;
                } else {
                    self.commit_buffer(window.unwrap_or(0));
                }
            }
        }
    }

    /// A first-cycle command.
    fn command(&mut self, cmd: u8) {
        self.mode = match cmd {
            cmd::RESET | cmd::AMD_RESET | cmd::READ_ARRAY => Mode::ReadArray,
            cmd::PROGRAM | cmd::PROGRAM_ALT => Mode::ProgramSetup,
            cmd::ERASE => Mode::EraseSetup,
            cmd::CLEAR_STATUS => {
                self.status = sr::READY;
                Mode::ReadArray
            }
            cmd::LOCK_SETUP => Mode::LockSetup,
            cmd::READ_STATUS => Mode::Status,
            cmd::READ_ID => Mode::Identify,
            cmd::QUERY => Mode::Query,
            cmd::BUFFERED_PROGRAM => Mode::BufferCount,
            _ => {
                self.stats.bad_sequences = self.stats.bad_sequences.saturating_add(1);
                Mode::ReadArray
            }
        };
    }

    /// A second cycle that does not belong to the command: the device reports a command
    /// sequence error and shows its status.
    fn sequence_error(&mut self) {
        self.status |= sr::SEQUENCE_ERROR;
        self.stats.bad_sequences = self.stats.bad_sequences.saturating_add(1);
        self.mode = Mode::Status;
    }

    /// Whether a program or erase touching blocks `first..=last` may go ahead; if not,
    /// records why with `error` (the program or erase error bit).
    fn may_change(&mut self, first: u32, last: u32, error: u8) -> bool {
        if !self.writable {
            self.status |= error;
        } else if (first..=last).any(|b| self.is_locked(b)) {
            self.status |= error | sr::BLOCK_LOCKED;
        } else {
            return true;
        }
        self.stats.refused = self.stats.refused.saturating_add(1);
        false
    }

    fn program_word(&mut self, offset: u64, n: u64, value: u64) {
        self.mode = Mode::Status;
        let Some(last) = offset.checked_add(n - 1).filter(|&l| l < self.size_bytes) else {
            self.status |= sr::PROGRAM_ERROR;
            self.stats.bad_sequences = self.stats.bad_sequences.saturating_add(1);
            return;
        };
        if !self.may_change(block_index(offset), block_index(last), sr::PROGRAM_ERROR) {
            return;
        }
        let bytes = value.to_le_bytes();
        for (a, &b) in (offset..=last).zip(bytes.iter()) {
            self.program_byte(a, b);
        }
        self.stats.programs = self.stats.programs.saturating_add(1);
    }

    /// Puts one data write of a buffered program into the staging window; false if it
    /// falls outside the window or the bank.
    fn stage(&mut self, window: Option<u64>, offset: u64, n: u64, value: u64) -> bool {
        let Some(window) = window else { return false };
        let inside = window.checked_add(WRITE_BUFFER_BYTES).is_some_and(|end| {
            end <= self.size_bytes && offset >= window && offset.checked_add(n).is_some_and(|e| e <= end)
        });
        if !inside {
            return false;
        }
        let start = (offset - window) as usize;
        let bytes = value.to_le_bytes();
        for (dst, &src) in self.buffer.iter_mut().skip(start).zip(bytes.iter().take(n as usize)) {
            *dst = src;
        }
        true
    }

    fn commit_buffer(&mut self, window: u64) {
        self.mode = Mode::Status;
        let block = block_index(window);
        if !self.may_change(block, block, sr::PROGRAM_ERROR) {
            return;
        }
        let staged = core::mem::take(&mut self.buffer);
        for (a, &b) in (window..).zip(staged.iter()) {
            self.program_byte(a, b);
        }
        self.buffer = staged;
        self.stats.programs = self.stats.programs.saturating_add(1);
    }

    fn erase(&mut self, offset: u64) {
        self.mode = Mode::Status;
        if offset >= self.size_bytes {
            self.status |= sr::ERASE_ERROR;
            self.stats.bad_sequences = self.stats.bad_sequences.saturating_add(1);
            return;
        }
        let block = block_index(offset);
        if !self.may_change(block, block, sr::ERASE_ERROR) {
            return;
        }
        if self.outside {
            self.ops.push(FlashOp::Erase { block });
        } else {
            self.blocks.insert(block, Block::Erased);
        }
        self.dirty.insert(block);
        self.stats.erases = self.stats.erases.saturating_add(1);
    }

    fn set_lock(&mut self, offset: u64, lock: bool) {
        if offset >= self.size_bytes {
            self.sequence_error();
            return;
        }
        self.mode = Mode::Status;
        let block = block_index(offset);
        if let Some(w) = self.locked.get_mut((block / 64) as usize) {
            let bit = 1u64 << (block % 64);
            if lock {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    fn is_locked(&self, block: u32) -> bool {
        self.locked.get((block / 64) as usize).is_some_and(|w| w & (1 << (block % 64)) != 0)
    }

    /// The contents at `a` (inside the bank).
    fn byte_at(&self, a: u64) -> u8 {
        if self.outside {
            return 0xff;
        }
        match self.blocks.get(&block_index(a)) {
            Some(Block::Erased) => 0xff,
            Some(Block::Bytes(v)) => v.get((a % BLOCK_BYTES) as usize).copied().unwrap_or(0xff),
            None => usize::try_from(a).ok().and_then(|i| self.image.get(i)).copied().unwrap_or(0xff),
        }
    }

    /// Programs one byte at `a` (inside the bank): only clears bits. A block is copied
    /// out of the image only when a bit actually changes.
    fn program_byte(&mut self, a: u64, data: u8) {
        if self.outside {
            self.dirty.insert(block_index(a));
            match self.ops.last_mut() {
                Some(FlashOp::Program { offset, bytes }) if *offset + bytes.len() as u64 == a => bytes.push(data),
                _ => self.ops.push(FlashOp::Program { offset: a, bytes: alloc::vec![data] }),
            }
            return;
        }
        let old = self.byte_at(a);
        if old & data == old {
            return;
        }
        let block = block_index(a);
        self.dirty.insert(block);
        let image = &self.image;
        let slot = self.blocks.entry(block).or_insert_with(|| Block::Bytes(image_block(image, block)));
        if let Block::Erased = slot {
            *slot = Block::Bytes(vec![0xff; BLOCK_BYTES as usize]);
        }
        if let Block::Bytes(v) = slot
            && let Some(b) = v.get_mut((a % BLOCK_BYTES) as usize)
        {
            *b = old & data;
        }
    }

    /// The byte the bus returns at `a` in the current mode.
    fn bus_byte(&self, a: u64) -> u8 {
        if a >= self.size_bytes {
            return 0;
        }
        if self.mode == Mode::ReadArray {
            return self.byte_at(a);
        }
        // Each chip answers with 16 bits in its half of the 32-bit bus word.
        let word = a / BANK_WIDTH;
        let chip: u16 = match self.mode {
            Mode::Identify => match word & 0xff {
                0 => MANUFACTURER_ID,
                1 => DEVICE_ID,
                2 => u16::from(self.is_locked(block_index(a))),
                _ => 0,
            },
            Mode::Query => usize::try_from(word).ok().and_then(|i| self.cfi.get(i)).copied().map_or(0, u16::from),
            _ => u16::from(self.status),
        };
        let lane = u32::from(chip) | (u32::from(chip) << 16);
        (lane >> (8 * (a % BANK_WIDTH))) as u8
    }
}

/// Bytes an access of `size` moves: 1 to 8, or 0 for anything else.
fn access_bytes(size: u8) -> u64 {
    if (1..=8).contains(&size) { u64::from(size) } else { 0 }
}

/// The block holding `a` (inside a bank, so at most 65535).
fn block_index(a: u64) -> u32 {
    (a / BLOCK_BYTES) as u32
}

/// Block `block`'s bytes from the image, erased past its end.
fn image_block(image: &[u8], block: u32) -> Vec<u8> {
    let mut v = vec![0xff; BLOCK_BYTES as usize];
    let start = usize::try_from(u64::from(block) * BLOCK_BYTES).unwrap_or(usize::MAX);
    let src = image.get(start..).unwrap_or(&[]);
    for (d, &s) in v.iter_mut().zip(src.iter()) {
        *d = s;
    }
    v
}

/// One chip's CFI query table, as QEMU fills it for a bank of `size_bytes` made of [`CHIPS`]
/// x16 chips (each chip holds every block's half: half the block size, all the blocks).
fn cfi_table(size_bytes: u64) -> [u8; CFI_TABLE_LEN] {
    let blocks = size_bytes / BLOCK_BYTES;
    let chip_block_bytes = BLOCK_BYTES / CHIPS;
    let chip_bytes = size_bytes / CHIPS;
    let mut t = [0u8; CFI_TABLE_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        for (d, &s) in t.iter_mut().skip(at).zip(bytes.iter()) {
            *d = s;
        }
    };
    put(0x10, b"QRY");
    // Primary command set 0x0001 (Intel/Sharp extended), its table at 0x31; no alternate.
    put(0x13, &[0x01, 0x00, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00]);
    // Vcc 4.5-5.5 V, no Vpp; timeouts (typical, then maximum as multipliers) as QEMU has them.
    put(0x1b, &[0x45, 0x55, 0x00, 0x00, 0x07, 0x07, 0x0a, 0x00, 0x04, 0x04, 0x04, 0x00]);
    // Chip size 2^n bytes; x8/x16 interface; write buffer 2^n bytes per chip.
    put(0x27, &[chip_bytes.trailing_zeros() as u8, 0x02, 0x00, CHIP_BUFFER_BITS, 0x00]);
    // One uniform erase region: blocks - 1, then the chip's block size / 256.
    let region = ((blocks - 1) & 0xffff) | ((chip_block_bytes >> 8) << 16);
    put(0x2c, &[0x01]);
    put(0x2d, &(region as u32).to_le_bytes());
    // Intel extended table version 1.0: no optional features (no suspend), one protection
    // field, the rest zero as in QEMU.
    put(0x31, b"PRI10");
    put(0x3f, &[0x01]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EDK2's `SEND_NOR_COMMAND`: the command to both chips at device word `word` of `base`.
    fn send(f: &mut CfiFlash, base: u64, word: u64, cmd: u32) {
        f.write(base + word * 4, 4, u64::from((cmd << 16) | (cmd & 0xffff)));
    }

    fn bank() -> CfiFlash {
        CfiFlash::new(BANK_BYTES, Vec::new(), true).unwrap()
    }

    fn contents(f: &CfiFlash, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        f.contents(offset, &mut v);
        v
    }

    /// EDK2's `NorFlashWriteBuffer`: buffer availability poll, count, data, confirm at the
    /// device base, status check, clear, read array. Returns the status it saw.
    fn edk2_write_buffer(f: &mut CfiFlash, target: u64, words: &[u32]) -> u64 {
        send(f, target, 0, u32::from(cmd::BUFFERED_PROGRAM));
        assert_eq!(f.read(target, 4) & 0x0080_0080, 0x0080_0080, "buffer available");
        send(f, target, 0, words.len() as u32 - 1);
        for (i, w) in words.iter().enumerate() {
            f.write(target + 4 * i as u64, 4, u64::from(*w));
        }
        send(f, 0, 0, u32::from(cmd::CONFIRM));
        send(f, 0, 0, u32::from(cmd::READ_STATUS));
        let status = f.read(0, 4);
        send(f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        send(f, 0, 0, u32::from(cmd::READ_ARRAY));
        status
    }

    /// EDK2's `NorFlashEraseSingleBlock`; returns the status it saw.
    fn edk2_erase(f: &mut CfiFlash, block_address: u64) -> u64 {
        send(f, block_address, 0, u32::from(cmd::ERASE));
        send(f, block_address, 0, u32::from(cmd::CONFIRM));
        send(f, 0, 0, u32::from(cmd::READ_STATUS));
        let status = f.read(0, 4);
        send(f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        send(f, 0, 0, u32::from(cmd::READ_ARRAY));
        status
    }

    #[test]
    fn sizes_and_images_are_checked() {
        assert!(CfiFlash::new(BANK_BYTES, vec![0; BANK_BYTES as usize], false).is_ok());
        assert!(CfiFlash::new(BLOCK_BYTES, Vec::new(), true).is_ok());
        for size_bytes in [0, BLOCK_BYTES / 2, BLOCK_BYTES * 3, BANK_BYTES + 1, MAX_BANK_BYTES * 2] {
            assert_eq!(CfiFlash::new(size_bytes, Vec::new(), true).err(), Some(FlashError::BadSize { size_bytes }));
        }
        assert_eq!(
            CfiFlash::new(BLOCK_BYTES, vec![0; BLOCK_BYTES as usize + 1], true).err(),
            Some(FlashError::ImageTooLarge { image_bytes: BLOCK_BYTES + 1, size_bytes: BLOCK_BYTES })
        );
    }

    #[test]
    fn cfi_query_reports_qry_and_the_bank_geometry() {
        let mut f = bank();
        // Linux's cfi_probe: reset, then the query command at chip word 0x55.
        send(&mut f, 0, 0, u32::from(cmd::AMD_RESET));
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        send(&mut f, 0, 0x55, u32::from(cmd::QUERY));
        assert!(!f.in_read_array_mode());
        // Both chips answer, each in its 16 bits.
        assert_eq!(f.read(0x10 * 4, 4), 0x0051_0051);
        assert_eq!(f.read(0x11 * 4, 4), 0x0052_0052);
        assert_eq!(f.read(0x12 * 4, 4), 0x0059_0059);
        assert_eq!(f.read(0x10 * 4, 8), 0x0052_0052_0051_0051);
        assert_eq!(f.read(0x10 * 4 + 2, 1), 0x51, "the second chip's low byte");
        assert_eq!(f.read(0x10 * 4 + 1, 1), 0, "the first chip's high byte");
        // Parse it as Linux's cfi_read_query does: the low byte at word (offset * interleave).
        let q = |f: &mut CfiFlash, at: u64| f.read(at * 4, 4) as u8;
        assert_eq!((q(&mut f, 0x13), q(&mut f, 0x14)), (0x01, 0x00), "Intel/Sharp command set");
        assert_eq!(q(&mut f, 0x15), 0x31, "extended table address");
        let interleave = 2u64;
        assert_eq!(q(&mut f, 0x27), 25, "chip size 2^25");
        assert_eq!(interleave << q(&mut f, 0x27), BANK_BYTES);
        assert_eq!(q(&mut f, 0x28), 0x02, "x8/x16 interface");
        assert_eq!(q(&mut f, 0x2a), 11, "2 KiB write buffer per chip");
        assert_eq!(interleave << q(&mut f, 0x2a), WRITE_BUFFER_BYTES);
        assert_eq!(q(&mut f, 0x2c), 1, "one erase region");
        let region: Vec<u8> = (0x2d..0x31).map(|a| q(&mut f, a)).collect();
        assert_eq!(region, [0xff, 0x00, 0x00, 0x02]);
        let blocks = u64::from(region[0]) + 1 + (u64::from(region[1]) << 8);
        let chip_block = (u64::from(region[2]) + (u64::from(region[3]) << 8)) * 256;
        assert_eq!((blocks, chip_block * interleave), (256, BLOCK_BYTES));
        let pri: Vec<u8> = (0x31..0x36).map(|a| q(&mut f, a)).collect();
        assert_eq!(pri, b"PRI10");
        assert_eq!(q(&mut f, 0x36), 0, "no erase suspend");
        assert_eq!(q(&mut f, 0x3f), 1, "one protection field");
        assert_eq!(f.read(CFI_TABLE_LEN as u64 * 4, 4), 0, "past the table");
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert!(f.in_read_array_mode());
        assert_eq!(f.read(0x10 * 4, 4), 0xffff_ffff, "erased contents again");

        // A smaller bank reports its own geometry.
        let mut small = CfiFlash::new(BLOCK_BYTES * 4, Vec::new(), true).unwrap();
        send(&mut small, 0, 0x55, u32::from(cmd::QUERY));
        assert_eq!(small.read(0x27 * 4, 4), 0x0013_0013, "512 KiB per chip");
        assert_eq!(small.read(0x2d * 4, 4), 0x0003_0003, "4 blocks");
    }

    #[test]
    fn read_id_reports_intel_codes_and_lock_status() {
        let mut f = bank();
        send(&mut f, 0, 0, u32::from(cmd::READ_ID));
        assert_eq!(f.read(0, 4), 0x0089_0089);
        assert_eq!(f.read(4, 4), 0x0018_0018);
        assert_eq!(f.read(0, 8), 0x0018_0018_0089_0089);
        // EDK2's NorFlashBlockIsLocked: read ID at block word 2.
        let block = 5 * BLOCK_BYTES;
        send(&mut f, block, 2, u32::from(cmd::READ_ID));
        assert_eq!(f.read(block + 8, 4), 0, "blocks come up unlocked");
        assert_eq!(f.read(block, 4), 0x0089_0089, "the codes repeat in every block");
        send(&mut f, block, 0, u32::from(cmd::LOCK_SETUP));
        send(&mut f, block, 0, u32::from(cmd::LOCK));
        send(&mut f, block, 2, u32::from(cmd::READ_ID));
        assert_eq!(f.read(block + 8, 4), 0x0001_0001);
        assert_eq!(f.read(block + BLOCK_BYTES + 8, 4), 0, "its neighbour is not locked");
    }

    #[test]
    fn reads_return_the_image_then_erased_bytes() {
        let image: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut f = CfiFlash::new(BANK_BYTES, image, false).unwrap();
        assert_eq!(f.read(0, 4), 0x0302_0100);
        assert_eq!(f.read(1, 8), 0x0807_0605_0403_0201, "unaligned 8 bytes");
        assert_eq!(f.read(3, 2), 0x0403);
        assert_eq!(f.read(998, 4), 0xffff_e7e6, "the image ends: erased");
        assert_eq!(f.read(BANK_BYTES - 4, 4), 0xffff_ffff);
        assert_eq!(f.read(BANK_BYTES - 2, 4), 0x0000_ffff, "past the end reads zero");
        assert_eq!(f.read(u64::MAX, 8), 0);
        assert_eq!(f.read(0, 0), 0);
        assert_eq!(f.read(0, 3), 0x02_0100);
        assert_eq!(f.read(0, 16), 0, "not a bus size");
    }

    #[test]
    fn word_program_only_clears_bits() {
        let mut f = CfiFlash::new(BANK_BYTES, vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0xf0], true).unwrap();
        // EDK2's NorFlashWriteSingleWord.
        send(&mut f, 0x100, 0, u32::from(cmd::PROGRAM));
        f.write(0x100, 4, 0x1234_5678);
        send(&mut f, 0, 0, u32::from(cmd::READ_STATUS));
        assert_eq!(f.read(0, 4), 0x0080_0080, "ready, no error");
        send(&mut f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(0x100, 4), 0x1234_5678);
        // Programming again only clears more bits.
        send(&mut f, 0x100, 0, u32::from(cmd::PROGRAM_ALT));
        f.write(0x100, 4, 0xff00_ff0f);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(0x100, 4), 0x1200_5608);
        // A byte program into the image's bytes, across nothing else.
        send(&mut f, 0, 0, u32::from(cmd::PROGRAM));
        f.write(4, 2, 0xffff);
        send(&mut f, 0, 0, u32::from(cmd::PROGRAM));
        f.write(5, 1, 0x3c);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(0, 8), 0xffff_300f_ffff_ffff);
        assert_eq!(f.stats(), FlashStats { programs: 4, ..FlashStats::default() }, "one changed nothing");
        assert_eq!(f.stored_bytes(), BLOCK_BYTES, "one block copied out");
        // A program that changes nothing copies nothing.
        send(&mut f, BLOCK_BYTES, 0, u32::from(cmd::PROGRAM));
        f.write(BLOCK_BYTES, 8, u64::MAX);
        assert_eq!(f.stored_bytes(), BLOCK_BYTES);
    }

    #[test]
    fn buffered_program_of_64_bytes_reads_back() {
        let mut f = bank();
        let target = 3 * BLOCK_BYTES + 0x80;
        let words: Vec<u32> = (0..16u32).map(|i| (0x0101_0101 * i) ^ 0xa5a5_0000).collect();
        assert_eq!(edk2_write_buffer(&mut f, target, &words), 0x0080_0080);
        assert!(f.in_read_array_mode());
        for (i, w) in words.iter().enumerate() {
            assert_eq!(f.read(target + 4 * i as u64, 4), u64::from(*w), "word {i}");
        }
        assert_eq!(f.read(target - 4, 4), 0xffff_ffff, "before the buffer");
        assert_eq!(f.read(target + 64, 4), 0xffff_ffff, "after the buffer");
        assert_eq!(f.stats().programs, 1);
        // A buffer only clears bits, too.
        assert_eq!(edk2_write_buffer(&mut f, target, &[0xffff_0000]), 0x0080_0080);
        assert_eq!(f.read(target, 4), u64::from(words[0] & 0xffff_0000));
        // Linux's do_write_buffer: command at the window, data anywhere in it, 8-byte writes.
        let window = 7 * WRITE_BUFFER_BYTES;
        f.write(window, 4, 0x00e8_00e8);
        f.write(window, 4, 0x0001_0001);
        f.write(window + 0x40, 8, 0x1122_3344_5566_7788);
        f.write(window + 0x48, 2, 0xbeef);
        f.write(window, 4, 0x00d0_00d0);
        assert_eq!(f.read(0, 4), 0x0080_0080, "status after the confirm");
        f.write(0, 4, 0x00ff_00ff);
        assert_eq!(f.read(window + 0x40, 8), 0x1122_3344_5566_7788);
        assert_eq!(f.read(window + 0x48, 4), 0xffff_beef);
    }

    #[test]
    fn block_erase_restores_exactly_that_block() {
        let image = vec![0u8; 3 * BLOCK_BYTES as usize];
        let mut f = CfiFlash::new(BANK_BYTES, image, true).unwrap();
        assert_eq!(edk2_erase(&mut f, BLOCK_BYTES + 0x1234), 0x0080_0080);
        assert_eq!(f.read(BLOCK_BYTES - 8, 8), 0, "the block before");
        assert_eq!(f.read(BLOCK_BYTES, 8), u64::MAX);
        assert_eq!(f.read(2 * BLOCK_BYTES - 8, 8), u64::MAX);
        assert_eq!(f.read(2 * BLOCK_BYTES, 8), 0, "the block after");
        assert_eq!(contents(&f, BLOCK_BYTES, BLOCK_BYTES as usize), vec![0xff; BLOCK_BYTES as usize]);
        assert_eq!(f.stored_bytes(), 0, "an erased block is a marker");
        // Program into the erased block, erase again: erased again.
        send(&mut f, 0, 0, u32::from(cmd::PROGRAM));
        f.write(BLOCK_BYTES + 8, 4, 0x1234_5678);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(BLOCK_BYTES + 8, 4), 0x1234_5678);
        assert_eq!(edk2_erase(&mut f, BLOCK_BYTES), 0x0080_0080);
        assert_eq!(f.read(BLOCK_BYTES + 8, 4), 0xffff_ffff);
        assert_eq!(f.stats(), FlashStats { programs: 1, erases: 2, ..FlashStats::default() });
        // Erasing every block of the bank allocates nothing.
        for b in 0..BANK_BYTES / BLOCK_BYTES {
            assert_eq!(edk2_erase(&mut f, b * BLOCK_BYTES), 0x0080_0080);
        }
        assert_eq!(f.stored_bytes(), 0);
        assert_eq!(f.read(0, 8), u64::MAX);
    }

    #[test]
    fn locked_blocks_refuse_changes_until_unlocked() {
        let mut f = bank();
        let block = 9 * BLOCK_BYTES;
        send(&mut f, block, 0, u32::from(cmd::LOCK_SETUP));
        send(&mut f, block, 0, u32::from(cmd::LOCK));
        assert_eq!(f.read(0, 4), 0x0080_0080, "the lock completes at once");
        send(&mut f, block, 0, u32::from(cmd::PROGRAM));
        f.write(block + 4, 4, 0);
        assert_eq!(f.read(block, 4), 0x0092_0092, "program error, block locked");
        send(&mut f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        assert_eq!(f.read(block + 4, 4), 0xffff_ffff, "unchanged");
        assert_eq!(edk2_erase(&mut f, block), 0x00a2_00a2, "erase error, block locked");
        assert_eq!(edk2_write_buffer(&mut f, block, &[0, 0]), 0x0092_0092);
        assert_eq!(f.read(block, 8), u64::MAX);
        assert_eq!(f.stats().refused, 3);
        // EDK2's NorFlashUnlockSingleBlock, then the same writes go through.
        send(&mut f, block, 0, u32::from(cmd::LOCK_SETUP));
        send(&mut f, block, 0, u32::from(cmd::CONFIRM));
        send(&mut f, 0, 0, u32::from(cmd::READ_STATUS));
        assert_eq!(f.read(0, 4), 0x0080_0080);
        send(&mut f, block, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(edk2_write_buffer(&mut f, block, &[0x1111_2222, 0x3333_4444]), 0x0080_0080);
        assert_eq!(f.read(block, 8), 0x3333_4444_1111_2222);
        assert_eq!(edk2_erase(&mut f, block), 0x0080_0080);
        assert_eq!(f.read(block, 8), u64::MAX);
        // Lock-down locks; reset unlocks.
        send(&mut f, block, 0, u32::from(cmd::LOCK_SETUP));
        send(&mut f, block, 0, u32::from(cmd::LOCK_DOWN));
        assert_eq!(edk2_erase(&mut f, block), 0x00a2_00a2);
        f.reset();
        assert!(f.in_read_array_mode());
        assert_eq!(edk2_erase(&mut f, block), 0x0080_0080);
    }

    #[test]
    fn a_read_only_bank_refuses_program_and_erase() {
        let image = vec![0x5a; 2 * BLOCK_BYTES as usize];
        let mut f = CfiFlash::new(BANK_BYTES, image.clone(), false).unwrap();
        // Queries still answer.
        send(&mut f, 0, 0x55, u32::from(cmd::QUERY));
        assert_eq!(f.read(0x10 * 4, 4), 0x0051_0051);
        send(&mut f, 0, 0, u32::from(cmd::READ_ID));
        assert_eq!(f.read(0, 4), 0x0089_0089);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        send(&mut f, 0, 0, u32::from(cmd::PROGRAM));
        f.write(0, 4, 0);
        assert_eq!(f.read(0, 4), 0x0090_0090, "program error");
        send(&mut f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        send(&mut f, 0, 0, u32::from(cmd::READ_STATUS));
        assert_eq!(f.read(0, 4), 0x0080_0080, "cleared, still ready");
        assert_eq!(edk2_erase(&mut f, BLOCK_BYTES), 0x00a0_00a0, "erase error");
        assert_eq!(edk2_write_buffer(&mut f, 0, &[0; 32]), 0x0090_0090);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(contents(&f, 0, image.len()), image);
        assert_eq!(f.read(2 * BLOCK_BYTES, 4), 0xffff_ffff);
        assert_eq!(f.stored_bytes(), 0);
        assert_eq!(f.stats(), FlashStats { refused: 3, ..FlashStats::default() });
    }

    #[test]
    fn bad_sequences_are_reported_and_counted() {
        let mut f = bank();
        // An unknown command: read array, counted, status untouched.
        send(&mut f, 0, 0, 0x77);
        assert!(f.in_read_array_mode());
        assert_eq!(f.stats().bad_sequences, 1);
        send(&mut f, 0, 0, u32::from(cmd::READ_STATUS));
        assert_eq!(f.read(0, 4), 0x0080_0080);
        // An erase not confirmed: sequence error, nothing erased.
        send(&mut f, 0, 0, u32::from(cmd::PROGRAM));
        f.write(0, 4, 0);
        send(&mut f, 0, 0, u32::from(cmd::ERASE));
        send(&mut f, 0, 0, 0x42);
        assert_eq!(f.read(0, 4), 0x00b0_00b0);
        send(&mut f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        assert_eq!(f.read(0, 4), 0, "not erased");
        // An erase cancelled by read array: no error.
        send(&mut f, 0, 0, u32::from(cmd::ERASE));
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(0, 4), 0);
        // A buffer count too large for the buffer: refused at once, nothing staged.
        send(&mut f, 0, 0, u32::from(cmd::BUFFERED_PROGRAM));
        f.write(0, 4, 0xffff_ffff);
        assert_eq!(f.read(0, 4), 0x00b0_00b0);
        send(&mut f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        // The largest count is taken: 1024 bus words, the whole 4 KiB window.
        send(&mut f, 0, 0, u32::from(cmd::BUFFERED_PROGRAM));
        send(&mut f, 0, 0, MAX_BUFFER_COUNT as u32);
        for i in 0..=MAX_BUFFER_COUNT {
            f.write(BLOCK_BYTES + i * 4, 4, i);
        }
        f.write(0, 4, 0x00d0_00d0);
        assert_eq!(f.read(0, 4), 0x0080_0080);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(BLOCK_BYTES + 4 * MAX_BUFFER_COUNT, 4), MAX_BUFFER_COUNT);
        // Data outside the window: program error at the confirm, nothing written.
        send(&mut f, 0, 0, u32::from(cmd::BUFFERED_PROGRAM));
        send(&mut f, 0, 0, 1);
        f.write(2 * BLOCK_BYTES, 4, 0);
        f.write(2 * BLOCK_BYTES + WRITE_BUFFER_BYTES, 4, 0);
        f.write(0, 4, 0x00d0_00d0);
        assert_eq!(f.read(0, 4), 0x0090_0090);
        // A buffered program not confirmed: sequence error, nothing written.
        send(&mut f, 0, 0, u32::from(cmd::BUFFERED_PROGRAM));
        send(&mut f, 0, 0, 0);
        f.write(2 * BLOCK_BYTES, 4, 0);
        f.write(0, 4, 0x00ff_00ff);
        assert_eq!(f.read(0, 4), 0x00b0_00b0);
        send(&mut f, 0, 0, u32::from(cmd::CLEAR_STATUS));
        assert_eq!(f.read(2 * BLOCK_BYTES, 8), u64::MAX);
        // Addresses past the bank.
        send(&mut f, 0, 0, u32::from(cmd::PROGRAM));
        f.write(BANK_BYTES - 2, 4, 0);
        send(&mut f, 0, 0, u32::from(cmd::ERASE));
        f.write(BANK_BYTES, 4, 0x00d0_00d0);
        assert_eq!(f.read(0, 4), 0x00b0_00b0);
        send(&mut f, 0, 0, u32::from(cmd::READ_ARRAY));
        assert_eq!(f.read(BANK_BYTES - 4, 4), 0xffff_ffff);
        assert_eq!(f.stats(), FlashStats { programs: 2, erases: 0, refused: 0, bad_sequences: 7 });
    }

    /// xorshift64: a small deterministic generator for the hostile tests.
    #[test]
    fn contents_kept_outside_come_out_as_program_and_erase_ops() {
        let mut f = CfiFlash::new(4 * BLOCK_BYTES, vec![0x55; 16], true).unwrap();
        f.keep_outside();
        assert_eq!(f.stored_bytes(), 0);
        // Word program (EDK2: 0x40 then the data) at 0x100: one op of 4 bytes.
        send(&mut f, 0, 0x40, 0x40);
        f.write(0x100, 4, 0x1234_5678);
        assert_eq!(f.read(0, 4), 0x0080_0080, "status: ready");
        assert_eq!(f.take_ops(), [FlashOp::Program { offset: 0x100, bytes: vec![0x78, 0x56, 0x34, 0x12] }]);
        // Block erase of block 2.
        send(&mut f, 2 * BLOCK_BYTES, 0, 0x20);
        send(&mut f, 2 * BLOCK_BYTES, 0, 0xd0);
        assert_eq!(f.take_ops(), [FlashOp::Erase { block: 2 }]);
        assert_eq!(f.take_dirty(), [0, 2]);
        assert_eq!(f.take_ops(), []);
        assert_eq!(f.stored_bytes(), 0, "nothing stored in the model");
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn hostile_access_streams_never_panic_and_stay_bounded() {
        let image: Vec<u8> = (0..3 * BLOCK_BYTES).map(|i| (i * 7) as u8).collect();
        for writable in [true, false] {
            let mut f = CfiFlash::new(BANK_BYTES, image.clone(), writable).unwrap();
            let mut s = 0x9e37_79b9_7f4a_7c15u64;
            let cmds = [0x00, 0x10, 0x20, 0x40, 0x50, 0x60, 0x01, 0x2f, 0x70, 0x90, 0x98, 0xd0, 0xe8, 0xff, 0x03];
            for _ in 0..100_000 {
                let r = xorshift(&mut s);
                let offset = match r % 5 {
                    0 => r >> 8,                           // anywhere
                    1 => u64::MAX - (r >> 60),             // at the top of the address space
                    _ => (r >> 8) % (BANK_BYTES + 0x1000), // in or just past the bank
                };
                let size = match (r >> 4) % 6 {
                    0 => (r >> 32) as u8, // any size, 0 and > 8 included
                    s => 1 << (s - 1),
                };
                let value = if r & 1 == 0 { cmds[((r >> 40) % cmds.len() as u64) as usize] } else { xorshift(&mut s) };
                if r & 2 == 0 {
                    f.read(offset, size);
                } else {
                    f.write(offset, size, value);
                }
            }
            let st = f.stats();
            assert!(st.bad_sequences > 0);
            assert!(f.stored_bytes() <= BANK_BYTES);
            assert!(f.blocks.len() as u64 <= BANK_BYTES / BLOCK_BYTES);
            assert!(f.buffer.len() as u64 <= WRITE_BUFFER_BYTES);
            if writable {
                assert!(st.programs > 0 && st.erases > 0, "{st:?}");
            } else {
                assert_eq!((st.programs, st.erases, f.stored_bytes()), (0, 0, 0));
                f.reset();
                assert_eq!(contents(&f, 0, image.len()), image);
            }
        }
    }
}
