//! The io_uring driver's tuning, read once at start-up from the environment. The options
//! beyond the buffer count are off by default because they did not pay on the machine
//! the defaults were measured on (`scripts/bench-uring-options.sh`, `docs/uring.md`);
//! they stay available for machines where they might. A malformed value is an error that
//! names the variable, never a silent default.
//!
//! - `THRONG_URING_BUFFERS`: buffers in each worker's provided-buffer ring (a power of
//!   two, 1 to 32,768; default 256).
//! - `THRONG_URING_SEND_ZC=<bytes>`: a send whose pieces (frames, or parts of frames)
//!   average at least this many bytes goes as `SEND_ZC`/`SENDMSG_ZC` (the kernel pins the
//!   frames instead of copying them; the driver keeps them until the kernel's
//!   notification).
//! - `THRONG_URING_SQPOLL=<idle ms>`: a kernel thread per ring polls the submission queue
//!   (`IORING_SETUP_SQPOLL`), sleeping after that long without work;
//!   `THRONG_URING_SQPOLL_CPU=<cpu>` pins it.
//! - `THRONG_URING_FIXED_FILES=1`: sockets go into a registered file table (indexed by fd,
//!   `FIXED_FILES_MAX` entries per worker), so that an operation skips the fd lookup.

use std::fmt;

/// Entries of a worker's registered file table: sockets whose fd is at least this use
/// their plain fd (the table costs the kernel 8 bytes an entry, whether used or not).
pub const FIXED_FILES_MAX: u32 = 1 << 16;

/// The driver's options; `Default` is what runs when no variable is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Buffers in each worker's provided-buffer ring.
    pub buffers: u16,
    /// Sends whose pieces average at least this many bytes go zero-copy.
    pub send_zc_min: Option<usize>,
    /// `IORING_SETUP_SQPOLL` with this idle time (ms).
    pub sqpoll_idle_ms: Option<u32>,
    /// The CPU the submission-queue thread is pinned to.
    pub sqpoll_cpu: Option<u32>,
    /// Registered files.
    pub fixed_files: bool,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            buffers: super::bufring::COUNT,
            send_zc_min: None,
            sqpoll_idle_ms: None,
            sqpoll_cpu: None,
            fixed_files: false,
        }
    }
}

/// A variable whose value the driver cannot use.
#[derive(Debug, PartialEq, Eq)]
pub struct BadTuning {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for BadTuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for BadTuning {}

impl From<BadTuning> for std::io::Error {
    fn from(e: BadTuning) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    }
}

impl Tuning {
    /// The tuning the process environment asks for.
    pub fn from_env() -> Result<Tuning, BadTuning> {
        Tuning::parse(|var| std::env::var(var).ok())
    }

    /// The tuning `get` (a variable's value, if set) asks for.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Tuning, BadTuning> {
        fn read<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            var: &'static str,
            expected: &'static str,
            ok: impl Fn(&T) -> bool,
        ) -> Result<Option<T>, BadTuning> {
            let Some(value) = get(var) else {
                return Ok(None);
            };
            match value.trim().parse::<T>() {
                Ok(v) if ok(&v) => Ok(Some(v)),
                _ => Err(BadTuning {
                    var,
                    value,
                    expected,
                }),
            }
        }
        let defaults = Tuning::default();
        Ok(Tuning {
            buffers: read(
                &get,
                "THRONG_URING_BUFFERS",
                "a power of two from 1 to 32768",
                |n: &u16| n.is_power_of_two() && *n <= 1 << 15,
            )?
            .unwrap_or(defaults.buffers),
            send_zc_min: read(
                &get,
                "THRONG_URING_SEND_ZC",
                "the smallest average piece, in bytes, to send zero-copy (at least 1)",
                |n: &usize| *n > 0,
            )?,
            sqpoll_idle_ms: read(
                &get,
                "THRONG_URING_SQPOLL",
                "the submission-queue thread's idle time in ms (1 to 10000)",
                |n: &u32| (1..=10_000).contains(n),
            )?,
            sqpoll_cpu: read(
                &get,
                "THRONG_URING_SQPOLL_CPU",
                "a CPU number",
                |_: &u32| true,
            )?,
            fixed_files: read(&get, "THRONG_URING_FIXED_FILES", "0 or 1", |n: &u8| *n <= 1)?
                .is_some_and(|n| n == 1),
        })
    }

    /// What differs from the default, for the start-up log line.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} receive buffers", self.buffers)];
        if let Some(n) = self.send_zc_min {
            parts.push(format!("SEND_ZC for pieces averaging {n} B or more"));
        }
        if let Some(ms) = self.sqpoll_idle_ms {
            match self.sqpoll_cpu {
                Some(cpu) => parts.push(format!("SQPOLL (idle {ms} ms, cpu {cpu})")),
                None => parts.push(format!("SQPOLL (idle {ms} ms)")),
            }
        }
        if self.fixed_files {
            parts.push("registered files".into());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Tuning, BadTuning> {
        Tuning::parse(|var| {
            vars.iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(parse(&[]), Ok(Tuning::default()));
        assert_eq!(Tuning::default().send_zc_min, None);
        assert!(!Tuning::default().fixed_files);
    }

    #[test]
    fn every_option_is_read() {
        let t = parse(&[
            ("THRONG_URING_BUFFERS", "1024"),
            ("THRONG_URING_SEND_ZC", "16384"),
            ("THRONG_URING_SQPOLL", "50"),
            ("THRONG_URING_SQPOLL_CPU", "0"),
            ("THRONG_URING_FIXED_FILES", "1"),
        ])
        .unwrap();
        assert_eq!(t.buffers, 1024);
        assert_eq!(t.send_zc_min, Some(16384));
        assert_eq!(t.sqpoll_idle_ms, Some(50));
        assert_eq!(t.sqpoll_cpu, Some(0));
        assert!(t.fixed_files);
        let text = t.describe();
        for part in ["1024", "SEND_ZC", "SQPOLL", "cpu 0", "registered files"] {
            assert!(text.contains(part), "{text}");
        }
        assert!(
            !parse(&[("THRONG_URING_FIXED_FILES", "0")])
                .unwrap()
                .fixed_files
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("THRONG_URING_BUFFERS", "300"),
            ("THRONG_URING_BUFFERS", "65536"),
            ("THRONG_URING_SEND_ZC", "0"),
            ("THRONG_URING_SEND_ZC", "big"),
            ("THRONG_URING_SQPOLL", "0"),
            ("THRONG_URING_SQPOLL_CPU", "-1"),
            ("THRONG_URING_FIXED_FILES", "yes"),
        ] {
            let e = parse(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(value), "{e}");
        }
    }
}
