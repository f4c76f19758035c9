//! Giving memory back to the system: after a large request, and every few seconds.
//!
//! glibc's malloc serves a large block from the heap once a block that size has been
//! freed (its mmap threshold rises), and a heap shrinks only from its top: after one big
//! transaction body the process kept its peak size. `malloc_trim` hands the free pages
//! back. Other allocators and platforms return memory on their own; there it is a no-op.
//!
//! The same retention made a long echo run grow: free pages scattered over the arenas of
//! the worker threads (seals and merges of the mapping runs free megabytes at a time) were
//! kept, and RSS rose with the run's age although the live heap did not (measured in a soak:
//! one `malloc_trim` took the process from 84 to 67 MiB, see `docs/store-memory.md`); the
//! `housekeeping` task calls [`give_back`] every few seconds.
//!
//! With the `jemalloc` feature Rust's allocations do not go through glibc at all and this
//! has next to nothing to do: jemalloc's background thread returns unused pages itself,
//! after a second (the settings in `lib.rs`).

use crate::appservice::LARGE_BODY_BYTES;

/// Trims the heap when dropped, if a large body was noted.
#[derive(Default)]
pub(crate) struct GiveBackWhenDone {
    large: bool,
}

impl GiveBackWhenDone {
    /// Notes a body of `len` bytes.
    pub(crate) fn body_of(&mut self, len: usize) {
        self.large |= len >= LARGE_BODY_BYTES;
    }
}

impl Drop for GiveBackWhenDone {
    fn drop(&mut self) {
        if self.large {
            give_back();
        }
    }
}

/// Returns free heap pages to the system.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free memory; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
