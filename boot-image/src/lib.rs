//! Boot image format, ELF placement and the loader's page tables, shared by the loader and the capvisor tool.
#![no_std]
