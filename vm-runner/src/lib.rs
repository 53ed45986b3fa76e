//! Guests on seL4 VCPUs through the HAL: config, address space, vCPUs, run loop, devices.
#![no_std]
