//! What the io_uring driver needs from the kernel, checked once at start-up: the ring
//! set-up flags, the opcodes (`IORING_REGISTER_PROBE`), the features, and the provided
//! buffer ring. A missing piece is reported by name (`Unsupported`), so that
//! `--driver uring` can refuse with a clear message and `--driver auto` fall back.
//!
//! Multishot accept (5.19), multishot receive (6.0) and cancelling every operation on an
//! fd (`IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL`, 5.19) have no opcode of their
//! own to probe; `IORING_SETUP_DEFER_TASKRUN` (6.1) being accepted implies them.

use std::fmt;
use std::io;

use io_uring::{IoUring, Probe, opcode};

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

/// Builds a ring of `entries` with the driver's flags (disabled until its worker thread
/// enables it, see `IORING_SETUP_R_DISABLED`), and checks opcodes and features.
pub fn build(entries: u32) -> Result<IoUring, Unsupported> {
    let ring = IoUring::builder()
        .setup_cqsize(entries * 4)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_r_disabled()
        .build(entries)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => missing("io_uring_setup (not built into this kernel)", Some(e)),
            Some(libc::EPERM) => missing(
                "permission to create rings (sysctl kernel.io_uring_disabled?)",
                Some(e),
            ),
            Some(libc::EINVAL) => missing(
                "IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (Linux 6.1)",
                Some(e),
            ),
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
    for (code, name) in OPCODES {
        if !probe.is_supported(code) {
            return Err(missing(name, None));
        }
    }
    Ok(ring)
}

/// Whether this kernel runs the io_uring driver: everything `build` checks, plus a
/// provided-buffer ring (registered and dropped again).
pub fn probe() -> Result<(), Unsupported> {
    let ring = build(8)?;
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
    fn probe_passes_or_names_what_is_missing() {
        match probe() {
            Ok(()) => {}
            Err(u) => {
                let text = u.to_string();
                assert!(text.contains("lacks"), "{text}");
                eprintln!("skip: io_uring probe failed: {text}");
            }
        }
    }
}
