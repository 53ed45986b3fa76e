//! capvisor loader.
#![no_std]
#![no_main]
