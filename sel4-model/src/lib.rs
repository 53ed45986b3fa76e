//! Executable model of the seL4 objects capvisor uses, implementing sel4::Kernel on the host.
