//! capvisor root task.
#![no_std]
#![no_main]
