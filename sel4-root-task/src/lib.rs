//! Root-task runtime: entry, stack, IPC buffer, heap, debug printing and panics.
#![no_std]
