//! Allocator tuning for candle on the CPU.
//!
//! candle allocates a fresh buffer for every tensor op. With glibc's defaults, buffers
//! above 128 KiB are mmapped and unmapped each time, and the kernel clears every page of
//! a fresh mapping on first touch. In training a third of the time went to page faults
//! (measured with `perf`). Raising the mmap and trim thresholds keeps freed memory in the
//! heap for reuse: the training step went from 5.0 s to 4.3 s. The threshold cannot go
//! above 32 MiB, though, and a training step's patch matrices are larger (16 images x 288
//! rows x 4,096 positions is 75 MB): page clearing was still 24% of the step. With mmap
//! off altogether every buffer comes from the heap; the step went from 6.3 s to 4.9 s
//! (two runs each, back to back, another job sharing the cores) for 5% more peak memory.

/// Keeps freed memory for reuse instead of returning it to the OS; call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
