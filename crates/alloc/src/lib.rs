//! The process allocator (jemalloc) and the options it runs with.
//!
//! Measured with 18,000 idle connections (docs/scaling.md): the allocator decides most of what an
//! idle connection costs beyond its own few hundred bytes of live state. A connection storm leaves
//! freed memory behind in every thread's pages; the allocator must give it back to the system
//! without waiting for the thread that freed it to allocate again, because a runtime worker that
//! has handed its connections to the idle pool may not. jemalloc's background threads do that on
//! their own: pages freed for [`DIRTY_DECAY_MS`] go back to the system (`MADV_DONTNEED`, so the
//! resident size falls at once, not "lazily freed" pages that still count as resident).
//!
//! This is the workspace's only `unsafe` code: the options string handed to jemalloc as the C
//! symbol it reads at start-up.

use std::ffi::{c_char, CStr};

pub use tikv_jemallocator::Jemalloc;

/// How long freed pages may stay resident before a background thread returns them.
pub const DIRTY_DECAY_MS: u32 = 1000;

/// jemalloc's run-time options: background threads return freed pages after [`DIRTY_DECAY_MS`],
/// with no second "muzzy" stage (`MADV_FREE`d pages stay in the resident size until the kernel
/// needs them). `MALLOC_CONF`-style options in the `_RJEM_MALLOC_CONF` variable still apply on
/// top.
pub const OPTIONS: &CStr = c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

/// The options string jemalloc reads when it starts (a `const char *` in C; `None` is NULL).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static c_char> = Some(
    // SAFETY: a pointer to the first byte of a NUL-terminated static string, read-only.
    unsafe { &*OPTIONS.as_ptr() },
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Read a boolean or unsigned option back from jemalloc.
    fn read<T: Copy + Default>(name: &CStr) -> T {
        let mut v = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `name` is NUL-terminated; `v` is a `T` of `len` bytes as the option's type is.
        let r = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut v as *mut T).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(r, 0, "mallctl {name:?}");
        v
    }

    #[test]
    fn jemalloc_runs_with_our_options() {
        assert!(OPTIONS
            .to_str()
            .unwrap()
            .contains(&format!("dirty_decay_ms:{DIRTY_DECAY_MS}")));
        assert!(read::<bool>(c"opt.background_thread"));
        assert_eq!(
            read::<isize>(c"opt.dirty_decay_ms"),
            DIRTY_DECAY_MS as isize
        );
        assert_eq!(read::<isize>(c"opt.muzzy_decay_ms"), 0);
    }
}
