//! What is particular to the architecture, apart from the pure VM model that uses it.
//!
//! Owns nothing of its own; each module's docs say what it owns.

pub mod aarch64;
