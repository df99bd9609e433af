//! What the benchmarks read from `/proc`: memory and CPU of a process, as the kernel counts them.
//! Shared by `proxy.rs` and `config_propagation.rs` (each includes it with `#[path]`); `which` is
//! a pid or `self`.

// Each benchmark uses the part it needs.
#![allow(dead_code)]

use std::process::Command;

/// A `kB` field of `/proc/<which>/status` (`"VmRSS:"`, `"VmHWM:"`, `"RssAnon:"`), in KiB; 0 when
/// unreadable.
pub fn status_kib(which: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{which}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `/proc/<which>/stat`, in clock ticks.
pub fn cpu_ticks(which: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).unwrap_or_default();
    // The command name may contain spaces; the fields after it are plain. After ')' come
    // state (3), ppid (4), …, utime (14) and stime (15), so they are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// `getconf CLK_TCK`, else the Linux default of 100.
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t: &f64| *t > 0.0)
        .unwrap_or(100.0)
}
