//! The provided-buffer ring (`IORING_REGISTER_PBUF_RING`): one per worker, the io_uring
//! counterpart of epoll's scratch buffer. `COUNT` buffers of `SIZE` bytes (16 MiB of
//! address space, resident only where the kernel has written: a 100-byte message touches
//! one page); a multishot
//! receive picks one when data arrives, so an idle connection owns no buffer even while
//! its receive is armed.
//!
//! Invariants:
//! - Every buffer is either *in the ring* (the kernel may write into it at any time, so
//!   no Rust reference to it exists) or *lent* (its CQE named it; the kernel will not
//!   touch it until `give_back`). `lend` makes the only slice of a lent buffer.
//! - The memory of the ring and of the buffers is freed only by `Drop`, which the owner
//!   runs after the kernel is done with them (the buffer group unregistered, or the
//!   io_uring closed with no receive in flight). See `Uring`'s `Drop`.
//! - Only this thread writes the tail; the kernel reads it (acquire) and writes the head.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

/// Buffers in the ring unless `THRONG_URING_BUFFERS` says otherwise (a power of two,
/// 1 to 32,768; tests set it small to run the ring dry).
pub const COUNT: u16 = 256;
/// Bytes per buffer: a receive completes with at most this much. As large as epoll's
/// scratch buffer, so that the sink sees input in pieces as large (code that looks at a
/// whole pending HTTP body on each piece does 16 times less work than with 4 KiB).
pub const SIZE: usize = 64 << 10;
const PAGE: usize = 4096;

/// `struct io_uring_buf` of the kernel ABI. The ring's tail lives in the `resv` field of
/// entry 0, so entries are written field by field through raw pointers, never as `&mut`.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}
const _: () = assert!(size_of::<RawBuf>() == 16);
const _: () = assert!(COUNT.is_power_of_two());

pub struct BufRing {
    entries: NonNull<RawBuf>,
    bufs: NonNull<u8>,
    /// Buffers in the ring, a power of two.
    count: u16,
    tail: u16,
    group: u16,
}

// SAFETY: the ring and its buffers are plain memory owned by this value; the kernel reads
// them on behalf of the io_uring, which moves with it. Only one thread uses it at a time
// (a driver is built on one thread and then moved to its worker thread for good).
unsafe impl Send for BufRing {}

impl BufRing {
    fn entries_bytes(count: u16) -> usize {
        (count as usize * size_of::<RawBuf>()).next_multiple_of(PAGE)
    }

    fn bufs_bytes(count: u16) -> usize {
        count as usize * SIZE
    }

    /// Allocates a ring of `count` buffers (a power of two), every buffer in it, and
    /// registers it as buffer group `group`.
    pub fn new(ring: &IoUring, group: u16, count: u16) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 1 << 15);
        // Anonymous mappings: page-aligned, zero-filled by the kernel, and resident only
        // once written (an aligned `alloc_zeroed` would write every byte of 16 MiB).
        let entries = map(Self::entries_bytes(count))?.cast::<RawBuf>();
        let bufs = match map(Self::bufs_bytes(count)) {
            Ok(bufs) => bufs,
            Err(e) => {
                // SAFETY: `entries` was mapped just above with this length, unused since.
                unsafe { unmap(entries.cast(), Self::entries_bytes(count)) };
                return Err(e);
            }
        };
        let mut this = BufRing {
            entries,
            bufs,
            count,
            tail: 0,
            group,
        };
        for bid in 0..count {
            this.put(bid);
        }
        this.publish();
        // SAFETY: `entries` holds `count` entries and stays allocated until `Drop`, which the
        // owner runs only after unregistering the group or closing the ring.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                group,
                0,
            )?;
        }
        Ok(this)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `bid`, which a CQE has just lent to us.
    ///
    /// # Safety
    /// `bid` must be lent (named by a CQE and not given back since), and the slice must be
    /// dropped before `give_back(bid)`.
    pub unsafe fn lend(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let bid = bid & (self.count - 1);
        let len = len.min(SIZE);
        // SAFETY: `bid < count`, so the range lies inside the allocation; the caller
        // guarantees the kernel does not write to a lent buffer.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_ptr().add(bid as usize * SIZE), len) }
    }

    /// Returns a lent buffer to the kernel.
    pub fn give_back(&mut self, bid: u16) {
        self.put(bid & (self.count - 1));
        self.publish();
    }

    /// Writes buffer `bid` into the entry at the local tail (not yet visible to the kernel).
    fn put(&mut self, bid: u16) {
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`. The entry at the unpublished tail is not read by the
        // kernel until `publish`; fields are written through raw pointers so that the
        // tail in entry 0's `resv` is never covered by a reference.
        unsafe {
            let entry = self.entries.as_ptr().add(index);
            std::ptr::addr_of_mut!((*entry).addr)
                .write(self.bufs.as_ptr().add(bid as usize * SIZE) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(SIZE as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every entry put so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the `resv` field of entry 0, a properly aligned u16 inside
        // the allocation; the kernel only reads it, so an atomic view of it is sound.
        let tail =
            unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.entries.as_ptr()).resv)) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both were mapped by `map` with these lengths; the owner guarantees the
        // kernel no longer uses them (see the module invariants).
        unsafe {
            unmap(self.entries.cast(), Self::entries_bytes(self.count));
            unmap(self.bufs, Self::bufs_bytes(self.count));
        }
    }
}

/// A private anonymous read-write mapping of `len` bytes.
fn map(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::ErrorKind::OutOfMemory.into())
}

/// Unmaps what `map` returned.
///
/// # Safety
/// `p` and `len` must come from one `map` call, and nothing may use the memory after.
unsafe fn unmap(p: NonNull<u8>, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { libc::munmap(p.as_ptr().cast(), len) };
}
