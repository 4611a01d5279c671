//! Per-feature firing state kept on the device between reports: steps since each feature last
//! fired (for the dead count and the pre-activation loss), firings in the current report window
//! (for the density histogram) and over the whole run (for the exported `sparsity`).

use burn::tensor::{Bool, Device, Tensor};

/// The firing counters of one run.
#[derive(Debug, Clone)]
pub struct Firing {
    /// Steps since each feature last fired.
    pub steps_since_fired: Tensor<1>,
    /// Firings per feature since the last report.
    pub window: Tensor<1>,
    /// Firings per feature over the run.
    pub total: Tensor<1>,
    /// Tokens seen since the last report.
    pub window_tokens: u64,
}

impl Firing {
    /// Zeroed counters for `d_sae` features.
    pub fn new(d_sae: usize, device: &Device) -> Self {
        Self {
            steps_since_fired: Tensor::zeros([d_sae], device),
            window: Tensor::zeros([d_sae], device),
            total: Tensor::zeros([d_sae], device),
            window_tokens: 0,
        }
    }

    /// Count one step's firings (`fire_counts` per feature) over `rows` tokens.
    pub fn record(&mut self, fire_counts: Tensor<1>, rows: usize) {
        let fired = fire_counts.clone().greater_elem(0.0);
        self.steps_since_fired = (self.steps_since_fired.clone() + 1.0).mask_fill(fired, 0.0);
        self.window = self.window.clone() + fire_counts.clone();
        self.total = self.total.clone() + fire_counts;
        self.window_tokens += rows as u64;
    }

    /// Features that have not fired in `dead_steps` steps.
    pub fn dead(&self, dead_steps: f64) -> Tensor<1, Bool> {
        self.steps_since_fired
            .clone()
            .greater_equal_elem(dead_steps)
    }

    /// Start a new report window.
    pub fn reset_window(&mut self) {
        self.window = self.window.zeros_like();
        self.window_tokens = 0;
    }
}
