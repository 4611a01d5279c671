//! A run's memory estimate as the run log records it ([`MemoryEstimate`]); the estimate itself is
//! computed in `crate::train::memory`.

use serde::{Deserialize, Serialize};

/// What a run needs, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// W_enc, W_dec, b_enc, b_dec, θ.
    pub parameters: u64,
    /// Adam's first and second moments.
    pub adam_moments: u64,
    /// One gradient per parameter.
    pub gradients: u64,
    /// The `[batch, d_sae]` buffers of a dense step and the `[batch, d_in]` ones around them.
    pub working_set: u64,
    /// Prefetched batches, the shuffle block and the held-out rows (host memory).
    pub data_buffers: u64,
    /// The sum.
    pub total: u64,
}

/// Bytes as GiB with two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl MemoryEstimate {
    /// The parts in one phrase, for the refusal.
    pub fn parts(&self) -> String {
        format!(
            "parameters {}, Adam moments {}, gradients {}, [batch, d_sae] working set {}, data buffers {}",
            gib(self.parameters),
            gib(self.adam_moments),
            gib(self.gradients),
            gib(self.working_set),
            gib(self.data_buffers)
        )
    }
}
