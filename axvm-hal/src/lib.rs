//! The AxVMHal trait of axvm, the contract between the VM layer and its host.
#![no_std]
