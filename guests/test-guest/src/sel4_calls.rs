//! seL4 16.0.0's system call numbers (non-MCS), as `libsel4/include/api/syscall.xml` numbers
//! them: the API calls from -1 down, then every entry of its `<debug>` section, numbered on
//! whether or not a kernel configuration has it.
//!
//! The guest is built without a kernel prefix (it is a guest, not an seL4 program), so the
//! numbers are written out here; `capvisor/tests/vm.rs` includes this file and checks it,
//! entry for entry, against the XML of the kernel it boots, so a kernel that renumbers its
//! calls fails that test instead of leaving the wild mode testing the wrong numbers.
//! Plain constants only: the host test compiles this file too.

/// The API calls (`<api-master>`): what seL4 performs for any thread whose `x7` holds one.
pub const API: [(&str, i64); 8] = [
    ("Call", -1),
    ("ReplyRecv", -2),
    ("Send", -3),
    ("NBSend", -4),
    ("Recv", -5),
    ("Reply", -6),
    ("Yield", -7),
    ("NBRecv", -8),
];

/// The `<debug>` section: debug, benchmark and architecture-specific calls, each performed
/// only by a kernel configured with it (a debug build performs the first six for any thread,
/// guests included: `DebugHalt` stops the machine).
pub const DEBUG: [(&str, i64); 22] = [
    ("DebugPutChar", -9),
    ("DebugDumpScheduler", -10),
    ("DebugHalt", -11),
    ("DebugCapIdentify", -12),
    ("DebugSnapshot", -13),
    ("DebugNameThread", -14),
    ("DebugSendIPI", -15),
    ("DebugGetThreadAffinity", -16),
    ("DebugRun", -17),
    ("BenchmarkFlushCaches", -18),
    ("BenchmarkResetLog", -19),
    ("BenchmarkFinalizeLog", -20),
    ("BenchmarkSetLogBuffer", -21),
    ("BenchmarkNullSyscall", -22),
    ("BenchmarkGetThreadUtilisation", -23),
    ("BenchmarkResetThreadUtilisation", -24),
    ("BenchmarkDumpAllThreadsUtilisation", -25),
    ("BenchmarkResetAllThreadsUtilisation", -26),
    ("X86DangerousWRMSR", -27),
    ("X86DangerousRDMSR", -28),
    ("VMEnter", -29),
    ("SetTLSBase", -30),
];
