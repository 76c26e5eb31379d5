//! What the generator reports and checks around a run: the loopback-only target, its own
//! CPU use, and /proc readings of the server (RSS) and the kernel (slab).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

/// A `ws://host:port/path` target, resolved and checked to be on this machine.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
}

/// Parses `url`; refuses anything that does not resolve to loopback only.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve: {e}"))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| format!("{url}: resolves to nothing"))?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "{url}: only loopback targets (127.0.0.0/8, ::1) are allowed"
        ));
    }
    Ok(Target {
        addr,
        host_header: authority.to_string(),
        path: path.to_string(),
    })
}

/// CPU time this process used since `start`, as a percentage of one core.
pub struct CpuMeter {
    wall: Instant,
    cpu_us: u64,
}

fn process_cpu_us() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it and only reads `usage`'s address.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid and writable.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter {
            wall: Instant::now(),
            cpu_us: process_cpu_us(),
        }
    }

    pub fn percent(&self) -> f64 {
        let wall = self.wall.elapsed().as_micros().max(1) as f64;
        (process_cpu_us() - self.cpu_us) as f64 * 100.0 / wall
    }
}

/// `VmRSS` of process `pid` in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kb(&status, "VmRSS:")
}

/// `Slab:` of /proc/meminfo in KiB (kernel objects: sockets, epoll items, ...).
pub fn slab_kb() -> Option<u64> {
    field_kb(&std::fs::read_to_string("/proc/meminfo").ok()?, "Slab:")
}

fn field_kb(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn loopback_urls_are_accepted() {
        let t = parse_target("ws://127.0.0.1:9000/chat").unwrap();
        assert_eq!(t.addr.port(), 9000);
        assert_eq!(t.path, "/chat");
        assert_eq!(t.host_header, "127.0.0.1:9000");
        assert_eq!(parse_target("ws://127.0.0.1").unwrap().addr.port(), 80);
        assert_eq!(
            parse_target("ws://[::1]:9/").unwrap().addr.ip(),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
        );
        assert_eq!(parse_target("ws://127.3.4.5:1/").unwrap().path, "/");
    }

    #[test]
    fn other_targets_are_refused() {
        assert!(parse_target("ws://10.0.0.1:80/").is_err());
        assert!(parse_target("ws://192.168.1.1/").is_err());
        assert!(parse_target("http://127.0.0.1/").is_err());
        assert!(parse_target("wss://127.0.0.1/").is_err());
    }

    #[test]
    fn proc_fields_parse() {
        assert_eq!(
            field_kb("VmPeak:\t 10 kB\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        assert!(rss_kb(std::process::id()).is_some());
        assert!(slab_kb().is_some());
    }
}
