//! Allocator tuning for candle on the CPU.
//!
//! candle allocates a fresh buffer for every tensor op. With glibc's defaults, buffers
//! above 128 KiB are mmapped and unmapped each time, and in training a third of the time
//! went to page faults (measured with `perf`). Raising the mmap and trim thresholds keeps
//! freed memory in the heap for reuse: the training step went from 5.0 s to 4.3 s.

/// Keeps freed memory for reuse instead of returning it to the OS; call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
