//! Metric definitions shared by training, evaluation and inspection (docs/training.md, "Metrics").

use serde::{Deserialize, Serialize};

/// A histogram with fixed, evenly spaced bins over `[lo, hi]`; values outside are clamped into
/// the end bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Count per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Histogram `values` into `bins` bins over `[lo, hi]`, ignoring NaN.
    pub fn new(values: impl IntoIterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Self {
        let mut counts = vec![0u64; bins];
        let width = (hi - lo) / bins as f64;
        for v in values {
            if v.is_nan() {
                continue;
            }
            let k = ((v - lo) / width).floor().clamp(0.0, (bins - 1) as f64) as usize;
            counts[k] += 1;
        }
        Self { lo, hi, counts }
    }
}

/// How a count of features that did not fire was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Training's: no firing in the last `tokens` training tokens (`train.dead_window_tokens`).
    Dead,
    /// Evaluation's: no firing on any of the `tokens` tokens evaluated.
    Silent,
}

impl Measure {
    /// Its name, as every screen and JSON key says it.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Dead => "dead",
            Measure::Silent => "silent",
        }
    }
}

/// Features that did not fire: how many, of how many, and over how many tokens. One type so
/// that every screen and table shows it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Inactive {
    /// `dead` (a training window) or `silent` (the evaluated tokens).
    pub measure: Measure,
    /// Features.
    pub count: u64,
    /// `count / d_sae`.
    pub fraction: f64,
    /// The tokens it was measured over (0: not known).
    pub tokens: u64,
}

impl Inactive {
    /// `140 (0.9%)`: the count with its percentage.
    pub fn short(&self) -> String {
        format!("{} ({:.1}%)", self.count, self.fraction * 100.0)
    }

    /// `over 10.0M tok` (or nothing when the token count is not known).
    pub fn over(&self) -> String {
        match self.tokens {
            0 => String::new(),
            t => format!("over {} tok", si(t as f64)),
        }
    }
}

impl std::fmt::Display for Inactive {
    /// `dead 140 (0.9%) over 10.0M tok`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.measure.name(), self.short())?;
        match self.tokens {
            0 => Ok(()),
            _ => write!(f, " {}", self.over()),
        }
    }
}

/// A count with an SI suffix: `950`, `12.3k`, `1.64M`, `2.10G`.
pub fn si(v: f64) -> String {
    match v.abs() {
        x if x >= 1e9 => format!("{:.2}G", v / 1e9),
        x if x >= 1e6 => format!("{:.2}M", v / 1e6),
        x if x >= 1e4 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

/// log10(freq + 1e-10), the density scale used everywhere.
pub fn log10_density(freq: f64) -> f64 {
    (freq + 1e-10).log10()
}

/// Running sums for L0, MSE and FVU over many batches (f64 on the host).
#[derive(Debug, Clone, Default)]
pub struct ReconAccumulator {
    /// Tokens seen.
    pub tokens: u64,
    /// Σ_t ‖x_t − x̂_t‖²
    pub sq_err: f64,
    /// Σ_t ‖x_t‖²
    pub sq_norm: f64,
    /// Σ_t x_t (per dimension)
    pub sum: Vec<f64>,
    /// Σ_t #active features
    pub active: f64,
}

impl ReconAccumulator {
    /// Add a batch: its rows `x` (`[n, d]`), its squared error, and its active-feature count.
    pub fn add(&mut self, x: &[f32], d: usize, sq_err: f64, active: f64) {
        if self.sum.len() != d {
            self.sum = vec![0.0; d];
        }
        for row in x.chunks(d) {
            for (s, &v) in self.sum.iter_mut().zip(row) {
                *s += v as f64;
                self.sq_norm += (v as f64) * (v as f64);
            }
            self.tokens += 1;
        }
        self.sq_err += sq_err;
        self.active += active;
    }

    /// Σ_t ‖x_t − x̄‖² = Σ‖x‖² − N‖x̄‖².
    pub fn total_variance(&self) -> f64 {
        let n = self.tokens.max(1) as f64;
        self.sq_norm - self.sum.iter().map(|s| s * s).sum::<f64>() / n
    }

    /// Fraction of variance unexplained.
    pub fn fvu(&self) -> f64 {
        self.sq_err / self.total_variance()
    }

    /// Mean squared error per token (sum over dimensions).
    pub fn mse(&self) -> f64 {
        self.sq_err / self.tokens.max(1) as f64
    }

    /// Normalised MSE: Σ‖x − x̂‖² / Σ‖x‖², the same in raw and training-scaled space.
    pub fn mse_norm(&self) -> f64 {
        self.sq_err / self.sq_norm
    }

    /// Mean active features per token.
    pub fn l0(&self) -> f64 {
        self.active / self.tokens.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_clamps_and_counts() {
        let h = Histogram::new([-11.0, -10.0, -5.0, 0.0, 3.0, f64::NAN], -10.0, 0.0, 10);
        assert_eq!(h.counts.iter().sum::<u64>(), 5);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[5], 1);
        assert_eq!(h.counts[9], 2);
    }

    #[test]
    fn fvu_matches_the_definition() {
        // x = [[1,0],[3,2]], x̄ = [2,1], Σ‖x−x̄‖² = 2+2 = 4
        let mut a = ReconAccumulator::default();
        a.add(&[1.0, 0.0], 2, 1.0, 3.0);
        a.add(&[3.0, 2.0], 2, 1.0, 1.0);
        assert!((a.total_variance() - 4.0).abs() < 1e-12);
        assert!((a.fvu() - 0.5).abs() < 1e-12);
        assert_eq!(a.l0(), 2.0);
        assert_eq!(a.mse(), 1.0);
    }
}
