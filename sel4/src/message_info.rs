//! `seL4_MessageInfo`: label, capabilities unwrapped, extra capabilities, length.

/// The message tag sent with every IPC and invocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(transparent)]
pub struct MessageInfo(u64);

impl MessageInfo {
    /// Largest message length in words (`seL4_MsgMaxLength`).
    pub const MAX_LENGTH: u64 = 120;
    /// Largest number of extra capabilities (`seL4_MsgMaxExtraCaps`).
    pub const MAX_EXTRA_CAPS: u64 = 3;

    /// A tag from its fields; out-of-range fields are truncated to their widths exactly as
    /// `seL4_MessageInfo_new` does (label 52 bits, unwrapped 3, extra caps 2, length 7).
    pub const fn new(label: u64, caps_unwrapped: u64, extra_caps: u64, length: u64) -> Self {
        MessageInfo(
            (label & 0xf_ffff_ffff_ffff) << 12
                | (caps_unwrapped & 0x7) << 9
                | (extra_caps & 0x3) << 7
                | (length & 0x7f),
        )
    }

    /// The raw word.
    pub const fn word(self) -> u64 {
        self.0
    }

    /// A tag from the raw word.
    pub const fn from_word(w: u64) -> Self {
        MessageInfo(w)
    }

    /// The label: an invocation label going in, an error code coming back, a fault label on
    /// a fault message.
    pub const fn label(self) -> u64 {
        self.0 >> 12
    }

    /// Bit mask of extra capabilities that were unwrapped to their badges.
    pub const fn caps_unwrapped(self) -> u64 {
        (self.0 >> 9) & 0x7
    }

    /// Number of extra capabilities.
    pub const fn extra_caps(self) -> u64 {
        (self.0 >> 7) & 0x3
    }

    /// Number of message registers.
    pub const fn length(self) -> u64 {
        self.0 & 0x7f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let m = MessageInfo::new(0x1234, 5, 3, 120);
        assert_eq!((m.label(), m.caps_unwrapped(), m.extra_caps(), m.length()), (0x1234, 5, 3, 120));
        // Over-wide fields are truncated, never spill into neighbours.
        let t = MessageInfo::new(1, 0xff, 0xff, 0xff);
        assert_eq!((t.label(), t.caps_unwrapped(), t.extra_caps(), t.length()), (1, 7, 3, 0x7f));
    }
}
