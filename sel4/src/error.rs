//! The kernel's error codes, one closed enum that mirrors `seL4_Error`.

use core::fmt;

/// An error returned by a kernel invocation: `seL4_Error` without `seL4_NoError`.
///
/// The discriminants are the kernel's own numbers (`libsel4/include/sel4/errors.h`), so a
/// value read from the message info of a reply converts with [`Error::from_word`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u64)]
pub enum Error {
    /// `seL4_InvalidArgument`
    InvalidArgument = 1,
    /// `seL4_InvalidCapability`
    InvalidCapability = 2,
    /// `seL4_IllegalOperation`
    IllegalOperation = 3,
    /// `seL4_RangeError`
    RangeError = 4,
    /// `seL4_AlignmentError`
    AlignmentError = 5,
    /// `seL4_FailedLookup`
    FailedLookup = 6,
    /// `seL4_TruncatedMessage`
    TruncatedMessage = 7,
    /// `seL4_DeleteFirst`
    DeleteFirst = 8,
    /// `seL4_RevokeFirst`
    RevokeFirst = 9,
    /// `seL4_NotEnoughMemory`
    NotEnoughMemory = 10,
}

/// Result of a kernel invocation.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// All errors, in the kernel's numbering order.
    pub const ALL: [Error; 10] = [
        Error::InvalidArgument,
        Error::InvalidCapability,
        Error::IllegalOperation,
        Error::RangeError,
        Error::AlignmentError,
        Error::FailedLookup,
        Error::TruncatedMessage,
        Error::DeleteFirst,
        Error::RevokeFirst,
        Error::NotEnoughMemory,
    ];

    /// Decodes a kernel error word: `Ok(())` for `seL4_NoError` (0), `Some` error for 1..=10.
    ///
    /// Returns `Err(word)` for a number the kernel never produces, so a corrupted reply is
    /// not silently taken for success.
    pub fn from_word(word: u64) -> core::result::Result<Option<Error>, u64> {
        match word {
            0 => Ok(None),
            1..=10 => Ok(Some(Error::ALL[(word - 1) as usize])),
            other => Err(other),
        }
    }

    /// The kernel's name for this error.
    pub const fn name(self) -> &'static str {
        match self {
            Error::InvalidArgument => "seL4_InvalidArgument",
            Error::InvalidCapability => "seL4_InvalidCapability",
            Error::IllegalOperation => "seL4_IllegalOperation",
            Error::RangeError => "seL4_RangeError",
            Error::AlignmentError => "seL4_AlignmentError",
            Error::FailedLookup => "seL4_FailedLookup",
            Error::TruncatedMessage => "seL4_TruncatedMessage",
            Error::DeleteFirst => "seL4_DeleteFirst",
            Error::RevokeFirst => "seL4_RevokeFirst",
            Error::NotEnoughMemory => "seL4_NotEnoughMemory",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        assert_eq!(Error::from_word(0), Ok(None));
        for e in Error::ALL {
            assert_eq!(Error::from_word(e as u64), Ok(Some(e)));
        }
        assert_eq!(Error::from_word(11), Err(11));
    }
}
