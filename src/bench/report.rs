//! What the generator reports and checks around a run: the loopback-only target, latency
//! percentiles, its own CPU use, and /proc readings of the server (RSS) and the kernel (slab).
//!
//! Invariants: a [`Target`] always resolves to loopback addresses only (127.0.0.0/8 or
//! ::1), so no mode can send traffic off this machine; everything here but the /proc and
//! getrusage readers is a pure function with a unit test.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use hdrhistogram::Histogram;

use super::sio::{self, ClientProto};

/// A `ws://host:port/path` target, resolved and checked to be on this machine, and the
/// protocol spoken over it.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
    pub proto: ClientProto,
    /// `wss://`: TLS over the connection.
    pub tls: bool,
}

impl Target {
    /// The name a TLS session asks for: the URL's host without its port.
    pub fn server_name(&self) -> String {
        match self.host_header.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => self
                .host_header
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// This target spoken to in `proto`: Socket.IO replaces the URL's path with
    /// [`sio::PATH`] (same host and port).
    pub fn speaking(mut self, proto: ClientProto) -> Target {
        if proto == ClientProto::Socketio {
            self.path = sio::PATH.to_string();
        }
        self.proto = proto;
        self
    }
}

/// Parses `url`; refuses anything that does not resolve to loopback only.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let lower = url
        .get(..6)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let (rest, tls) = if lower.starts_with("ws://") {
        (&url[5..], false)
    } else if lower.starts_with("wss://") {
        (&url[6..], true)
    } else {
        return Err(format!("{url}: only ws:// and wss:// URLs are supported"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    if authority.contains('@') {
        return Err(format!("{url}: user info is not supported"));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| c.is_ascii_control() || *c == ' ' || *c == '#')
    {
        return Err(format!("{url}: {bad:?} in the path"));
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let with_port = match (has_port, tls) {
        (true, _) => authority.to_string(),
        (false, false) => format!("{authority}:80"),
        (false, true) => format!("{authority}:443"),
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
        path,
        proto: ClientProto::Ws,
        tls,
    })
}

/// Latency percentiles of one run, in the histogram's unit (microseconds here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// Reads p50, p99, p99.9 and max; all zero for an empty histogram.
    pub fn of(hist: &Histogram<u64>) -> Percentiles {
        if hist.is_empty() {
            return Percentiles {
                p50: 0,
                p99: 0,
                p999: 0,
                max: 0,
            };
        }
        Percentiles {
            p50: hist.value_at_quantile(0.5),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        }
    }
}

/// A latency histogram from 1 us to 60 s with 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// Growth per connection in bytes between two KiB readings; `None` when a reading is
/// missing or nothing was held. A shrink reads as 0.
pub fn per_conn_bytes(before_kb: Option<u64>, after_kb: Option<u64>, held: usize) -> Option<f64> {
    match (before_kb, after_kb) {
        (Some(b), Some(a)) if held > 0 => Some((a.saturating_sub(b) * 1024) as f64 / held as f64),
        _ => None,
    }
}

/// CPU time (user + system) this process used since `start`, as a percentage of one
/// core: 100 means one core was busy the whole time, 200 two cores.
#[derive(Debug)]
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
        process_cpu_us().saturating_sub(self.cpu_us) as f64 * 100.0 / wall
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
        assert_eq!(parse_target("WS://127.0.0.1:1").unwrap().path, "/");
        assert_eq!(parse_target("ws://127.0.0.1:1?a=b").unwrap().path, "/?a=b");
        assert_eq!(
            parse_target("ws://127.0.0.1:1/x?a=b").unwrap().path,
            "/x?a=b"
        );
        let local = parse_target("ws://localhost:7/").unwrap();
        assert!(local.addr.ip().is_loopback());
        assert_eq!(local.host_header, "localhost:7");
    }

    #[test]
    fn socketio_targets_keep_host_and_port_and_take_the_engineio_path() {
        let t = parse_target("ws://127.0.0.1:9000/chat?x=1").unwrap();
        assert_eq!(t.proto, ClientProto::Ws);
        let ws = t.clone().speaking(ClientProto::Ws);
        assert_eq!(ws.path, "/chat?x=1");
        let sio = t.speaking(ClientProto::Socketio);
        assert_eq!(sio.path, "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(sio.host_header, "127.0.0.1:9000");
        assert_eq!(sio.addr.port(), 9000);
        assert_eq!(sio.proto, ClientProto::Socketio);
    }

    #[test]
    fn other_targets_are_refused() {
        assert!(parse_target("ws://10.0.0.1:80/").is_err());
        assert!(parse_target("ws://192.168.1.1/").is_err());
        assert!(parse_target("http://127.0.0.1/").is_err());
        assert!(parse_target("wss://10.0.0.1/").is_err());
        let tls = parse_target("wss://localhost/x").unwrap();
        assert!(tls.tls);
        assert_eq!(
            (tls.addr.port(), tls.server_name().as_str()),
            (443, "localhost")
        );
        assert!(parse_target("ws://8.8.8.8:80/").is_err());
        assert!(parse_target("ws://[2001:db8::1]:80/").is_err());
        assert!(parse_target("ws://0.0.0.0:80/").is_err());
        assert!(parse_target("ws://user@127.0.0.1:80/").is_err());
        assert!(parse_target("ws://127.0.0.1:99999/").is_err());
        assert!(parse_target("ws:///path").is_err());
        assert!(parse_target("ws://127.0.0.1:1/a b").is_err());
        assert!(parse_target("ws://127.0.0.1:1/a\r\nX: y").is_err());
        assert!(parse_target("ws").is_err());
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = latency_histogram();
        assert_eq!(
            Percentiles::of(&h),
            Percentiles {
                p50: 0,
                p99: 0,
                p999: 0,
                max: 0
            }
        );
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        // Three significant digits: each value within 0.1% of the exact rank.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(p.p50, 5_000), "{p:?}");
        assert!(near(p.p99, 9_900), "{p:?}");
        assert!(near(p.p999, 9_990), "{p:?}");
        assert!(near(p.max, 10_000), "{p:?}");
        h.record(2_000_000).unwrap();
        assert!(near(Percentiles::of(&h).max, 2_000_000));
        assert!(near(Percentiles::of(&h).p99, 9_900));
    }

    #[test]
    fn growth_per_connection() {
        assert_eq!(per_conn_bytes(Some(1000), Some(2000), 1024), Some(1000.0));
        assert_eq!(per_conn_bytes(Some(2000), Some(1000), 10), Some(0.0));
        assert_eq!(per_conn_bytes(None, Some(1000), 10), None);
        assert_eq!(per_conn_bytes(Some(1), Some(2), 0), None);
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
