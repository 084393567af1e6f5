//! The process allocator, and one call the safe `mimalloc` crate does not offer.
//!
//! mimalloc gives pages that became wholly free back to the system lazily, when the thread that
//! owns them next does allocator work after a short delay. A runtime worker that has just served a
//! burst (say, thousands of connections opening, then going idle and leaving the runtime for the
//! idle pool) may do no allocator work for minutes, so the burst's memory stays resident although
//! nothing uses it. [`collect_this_thread`], called when a worker goes idle (at most ten times a
//! second), hands it back.
//!
//! This is the workspace's only `unsafe` code: one foreign call without preconditions.

pub use mimalloc::MiMalloc;

/// Give memory freed on the calling thread back to the system (mimalloc's `mi_collect(false)`:
/// not forced, so it is cheap and only returns what is wholly free).
pub fn collect_this_thread() {
    // SAFETY: `mi_collect` takes no pointers and has no preconditions; it only walks the calling
    // thread's own heap and the process's free segments, under mimalloc's own locking.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn collecting_with_nothing_to_collect_is_harmless() {
        let v: Vec<u8> = vec![1; 1 << 20];
        drop(v);
        super::collect_this_thread();
        super::collect_this_thread();
    }
}
