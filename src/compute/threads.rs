//! Thread tuning for candle on the CPU.
//!
//! candle 0.11 runs its element-wise CPU ops on a pool of its own beside rayon's (which
//! the convolutions, the search and the matrix products here use), and its idle threads
//! spin 25,000 times before they park. On two cores that spinning takes turns from
//! rayon's workers: `perf` put 4% of a training step's samples in a spinning candle
//! thread, and letting its threads park after 100 spins made the step 4-7% faster
//! (`spae bench-train --freeze-branch`, three runs each, one after another, see the
//! README's training speed).

/// The spin limit set where the user has set none (`CANDLE_BARRIER_POOL_SPIN_LIMIT`).
const SPIN_LIMIT: &str = "100";

/// Lets candle's idle threads park soon; call once at start-up, before any thread starts
/// (candle reads the variable when its pool starts).
pub fn park_idle_candle_threads() {
    const VARIABLE: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VARIABLE).is_none() {
        std::env::set_var(VARIABLE, SPIN_LIMIT);
    }
}
