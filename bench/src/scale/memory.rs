//! A process's peak resident memory from `/proc` (Linux): `VmHWM`, the high-water mark of
//! `VmRSS`, reset to the current RSS by writing `5` to `/proc/<pid>/clear_refs`, so one warm
//! process's peak can be read per invocation.

/// `VmRSS` and `VmHWM` of `pid`, KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    pub current_kib: u64,
    pub peak_kib: u64,
}

/// Reads `/proc/<pid>/status`; `None` once the process is gone.
pub fn read(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Rss {
        current_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Resets the peak of `pid` to its current RSS; false if the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
