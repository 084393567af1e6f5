//! Linux `/proc` readings: a process's resident set and CPU time, the kernel's slab total, this
//! process's own peak RSS. Every reader returns `None` when the file is missing or unreadable.

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ; 100 on every Linux architecture
/// that matters here).
const CLK_TCK: f64 = 100.0;

/// A `Name:   1234 kB` field of a `/proc` key-value file, in KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// `VmRSS` of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS",
    )
}

/// Peak RSS (`VmHWM`) of this process, KiB.
pub(crate) fn self_peak_rss_kib() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM")
}

/// User + system CPU seconds of a process (all threads).
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU seconds of this process.
pub(crate) fn self_cpu_secs() -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime (field 14) + stime (field 15) of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // rest starts at field 3 (state); utime is field 14.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLK_TCK)
}

/// `Slab` of `/proc/meminfo`, KiB (system-wide kernel slab memory: socket buffers, TCP state, ...).
pub(crate) fn slab_kib() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "Slab")
}

/// `SUnreclaim` of `/proc/meminfo`, KiB: the unreclaimable part of the slab, where socket and TCP
/// state live; steadier than `Slab`, whose reclaimable caches move with file-system activity.
pub(crate) fn slab_unreclaimable_kib() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "SUnreclaim",
    )
}

/// The soft and hard limits on open files of this process.
pub(crate) fn nofile_limits() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let parse = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    Some((parse(f.next()?)?, parse(f.next()?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS"),
            Some(1234)
        );
        assert_eq!(kib_field("VmRSSx: 1 kB\n", "VmRSS"), None);
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1";
        assert_eq!(parse_stat_cpu(stat), Some(4.0));
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_secs(me).is_some());
        assert!(slab_kib().unwrap() > 0);
        assert!(slab_unreclaimable_kib().unwrap() > 0);
        assert!(self_peak_rss_kib().unwrap() > 0);
        assert!(nofile_limits().is_some());
    }
}
