//! AxVMHal implemented as a client of seL4 capabilities: untyped pool, capability table, time by IPC.
#![no_std]
