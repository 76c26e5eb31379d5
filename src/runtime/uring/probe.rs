//! What the io_uring driver needs from the kernel, checked once at start-up: the ring
//! set-up flags, the opcodes (`IORING_REGISTER_PROBE`), the features, and the provided
//! buffer ring. A missing piece is reported by name (`Unsupported`), so that
//! `--driver uring` can refuse with a clear message and `--driver auto` fall back.
//!
//! Multishot accept (5.19), multishot receive (6.0) and cancelling every operation on an
//! fd (`IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL`, 5.19) have no opcode of their
//! own to probe; `IORING_SETUP_SINGLE_ISSUER` (6.0), which every ring asks for, being
//! accepted implies them. The options of `tuning.rs` add their own checks.

use std::fmt;
use std::io;

use io_uring::{IoUring, Probe, opcode};

use super::tuning::Tuning;

/// The piece of io_uring the kernel lacks, and what it said.
#[derive(Debug)]
pub struct Unsupported {
    pub what: &'static str,
    pub error: Option<io::Error>,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the kernel's io_uring lacks {}", self.what)?;
        if let Some(e) = &self.error {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unsupported {}

impl From<Unsupported> for io::Error {
    fn from(u: Unsupported) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, u.to_string())
    }
}

/// What `THRONG_URING_FIXED_FILES` needs.
pub const FIXED_FILES: &str =
    "IORING_REGISTER_FILES2 with a sparse table (Linux 5.19; THRONG_URING_FIXED_FILES)";

fn missing(what: &'static str, error: Option<io::Error>) -> Unsupported {
    Unsupported { what, error }
}

/// Opcodes the driver submits.
const OPCODES: [(u8, &str); 6] = [
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
    (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    (opcode::Read::CODE, "IORING_OP_READ"),
];

/// Opcodes the driver submits with `THRONG_URING_SEND_ZC`.
const ZC_OPCODES: [(u8, &str); 2] = [
    (opcode::SendZc::CODE, "IORING_OP_SEND_ZC (Linux 6.0)"),
    (opcode::SendMsgZc::CODE, "IORING_OP_SENDMSG_ZC (Linux 6.1)"),
];

/// Builds a ring of `entries` with the driver's flags (disabled until its worker thread
/// enables it, see `IORING_SETUP_R_DISABLED`), and checks opcodes and features.
///
/// Task work (a receive's copy, a send's completion) runs when the worker enters the
/// ring (`DEFER_TASKRUN`), except with `SQPOLL`, where the kernel's polling thread runs it.
pub fn build(entries: u32, tuning: &Tuning) -> Result<IoUring, Unsupported> {
    let mut builder = IoUring::builder();
    builder
        .setup_cqsize(entries * 4)
        .setup_single_issuer()
        .setup_r_disabled();
    let flags = match tuning.sqpoll_idle_ms {
        Some(idle) => {
            builder.setup_sqpoll(idle);
            if let Some(cpu) = tuning.sqpoll_cpu {
                builder.setup_sqpoll_cpu(cpu);
            }
            "IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER (Linux 6.0; THRONG_URING_SQPOLL)"
        }
        None => {
            builder.setup_defer_taskrun();
            "IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (Linux 6.1)"
        }
    };
    let ring = builder.build(entries).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => missing("io_uring_setup (not built into this kernel)", Some(e)),
        Some(libc::EPERM) => missing(
            "permission to create rings (sysctl kernel.io_uring_disabled?)",
            Some(e),
        ),
        Some(libc::EINVAL) => missing(flags, Some(e)),
        _ => missing("a ring (io_uring_setup failed)", Some(e)),
    })?;
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(missing("IORING_FEAT_EXT_ARG (Linux 5.11)", None));
    }
    if !params.is_feature_nodrop() {
        return Err(missing("IORING_FEAT_NODROP (Linux 5.5)", None));
    }
    if !params.is_feature_fast_poll() {
        return Err(missing("IORING_FEAT_FAST_POLL (Linux 5.7)", None));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| missing("IORING_REGISTER_PROBE (Linux 5.6)", Some(e)))?;
    let zc = tuning.send_zc_min.map_or(&[][..], |_| &ZC_OPCODES[..]);
    for &(code, name) in OPCODES.iter().chain(zc) {
        if !probe.is_supported(code) {
            return Err(missing(name, None));
        }
    }
    // The zero-copy sends ask whether the kernel copied after all, a flag with no probe.
    if tuning.send_zc_min.is_some() && kernel_version().is_some_and(|v| v < (6, 2)) {
        return Err(missing(
            "IORING_SEND_ZC_REPORT_USAGE (Linux 6.2; THRONG_URING_SEND_ZC)",
            None,
        ));
    }
    Ok(ring)
}

/// The running kernel's (major, minor) version, if `/proc` says.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether this kernel runs the io_uring driver with `tuning`: everything `build` checks,
/// plus a provided-buffer ring (registered and dropped again) and, if asked for, a
/// registered file table.
pub fn probe(tuning: &Tuning) -> Result<(), Unsupported> {
    let ring = build(8, tuning)?;
    if tuning.fixed_files {
        ring.submitter()
            .register_files_sparse(8)
            .map_err(|e| missing(FIXED_FILES, Some(e)))?;
    }
    let bufs = super::bufring::BufRing::new(&ring, 0, 8)
        .map_err(|e| missing("IORING_REGISTER_PBUF_RING (Linux 5.19)", Some(e)))?;
    // Unregister before the memory goes (`BufRing`'s invariant); closing the ring would do too.
    let _ = ring.submitter().unregister_buf_ring(bufs.group());
    drop(bufs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_version_is_read() {
        let (major, _) = kernel_version().expect("uname");
        assert!(major >= 3, "{major}");
    }

    #[test]
    fn probe_passes_or_names_what_is_missing() {
        match probe(&Tuning::default()) {
            Ok(()) => {}
            Err(u) => {
                let text = u.to_string();
                assert!(text.contains("lacks"), "{text}");
                eprintln!("skip: io_uring probe failed: {text}");
            }
        }
    }
}
