//! What the trainer reports every `log_every` steps: the queued loss parts read back in one
//! transfer (where a non-finite loss is caught and named by its step), and the metrics record
//! built from them, the last batch and the firing counters.

use crate::metrics::stats::Histogram;
use crate::sae::loss::LossParts;
use crate::sae::model::{Architecture, download};
use crate::schema::record::{MetricsRecord, WidthFvu};
use crate::train::schedule::{lambda_at, lr_at};
use crate::train::trainer::{Feed, Trainer};
use burn::tensor::Tensor;
use std::time::Instant;

/// The `[5]` loss-parts tensors of the steps since the last read-back, still on the device.
#[derive(Debug, Default)]
pub struct LossQueue {
    pending: Vec<(u64, Tensor<1>)>,
}

impl LossQueue {
    /// Queue step `step`'s loss parts.
    pub fn push(&mut self, step: u64, parts: Tensor<1>) {
        self.pending.push((step, parts));
    }

    /// Read every queued step back in one transfer: the last step's parts (`None` if nothing
    /// was queued), or `Err(step)` naming the first step whose loss is not finite.
    pub fn read(&mut self) -> Result<Option<LossParts>, u64> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let steps: Vec<u64> = self.pending.iter().map(|(s, _)| *s).collect();
        let all = Tensor::cat(self.pending.drain(..).map(|(_, t)| t).collect(), 0);
        let v = download(&all);
        if let Some(k) = v.chunks(5).position(|c| !c[0].is_finite()) {
            return Err(steps[k]);
        }
        let last = &v[v.len() - 5..];
        Ok(Some(LossParts {
            loss: last[0] as f64,
            mse: last[1] as f64,
            sparsity: last[2] as f64,
            l0: last[3] as f64,
            pre_act: last[4] as f64,
        }))
    }
}

/// Evenly spaced bins of the θ and firing-frequency histograms.
const HIST_BINS: usize = 40;

impl Trainer {
    /// The metrics record for the report after the step just taken: loss `parts`, the batch `x`
    /// with its target `y` (`x` itself for an SAE) and `residual` (for the explained variance of
    /// `y`), the throughput of the window since the previous report (which this starts anew),
    /// and seconds since `started`.
    pub(super) fn metrics_record(
        &mut self,
        parts: Option<LossParts>,
        (x, y): (Tensor<2>, Tensor<2>),
        (residual, inner_sq): (Tensor<2>, Option<Tensor<1>>),
        started: Instant,
    ) -> MetricsRecord {
        let p = parts.unwrap_or(LossParts {
            loss: f64::NAN,
            mse: f64::NAN,
            sparsity: f64::NAN,
            l0: f64::NAN,
            pre_act: f64::NAN,
        });
        let (window_start, window_tokens_start) = self.st.window;
        let window_s = window_start.elapsed().as_secs_f64().max(1e-9);
        let window_tokens = self.st.tokens_seen - window_tokens_start;
        let tokens_per_s = window_tokens as f64 / window_s;
        let batch = self.res.cfg.data.batch_size as f64;
        let window_steps = (window_tokens as f64 / batch).round().max(1.0);
        let sparse_fraction = (self.st.sparse_steps as f64 / window_steps).min(1.0);
        self.st.sparse_steps = 0;
        self.st.window = (Instant::now(), self.st.tokens_seen);
        let wait = match &mut self.res.feed {
            Feed::Own(d) => d.take_wait(),
            Feed::Fed(waited) => std::mem::take(waited),
        };
        let data_wait_fraction = (wait.as_secs_f64() / window_s).min(1.0);
        let (_, m) = self.st.sae.dims();
        let centred = y.clone() - y.clone().mean_dim(0);
        let dead_mask = self.st.firing.dead(self.dead_steps()).float();
        let window = self.st.firing.window_tokens.max(1) as f64;
        let log_freq =
            (self.st.firing.window.clone() / window + 1e-10).log() / std::f64::consts::LN_10;
        // θ in raw units: the output's scale (a transcoder's f is in its target's units)
        let out_scale = self.st.target_scale.unwrap_or(self.st.scale);
        let log_theta = (self.st.sae.theta() * out_scale).log() / std::f64::consts::LN_10;
        // one transfer for everything the record needs from the device
        let inner_n = inner_sq.as_ref().map_or(0, |t| t.dims()[0]);
        let mut packed = vec![
            residual.square().sum(),
            centred.square().sum(),
            y.square().sum(),
            dead_mask.clone().sum(),
            log_freq,
            log_theta,
            dead_mask,
        ];
        packed.extend(inner_sq);
        let v = download(&Tensor::cat(packed, 0));
        let fvu = v[0] as f64 / v[1] as f64;
        let widths = self.res.cfg.sae.inner_widths(m);
        let matryoshka_fvu = v[v.len() - inner_n..]
            .iter()
            .zip(widths)
            .map(|(&sq, width)| WidthFvu {
                width,
                fvu: sq as f64 / v[1] as f64,
            })
            .collect();
        let mse_norm = v[0] as f64 / v[2] as f64;
        let dead = v[3] as u64;
        let v = &v[4..];
        // a store smaller than the window repeats: its size bounds the finest frequency too
        let resolves = window.min(self.res.train_tokens.max(1) as f64);
        let firing_hist = firing_histogram(&v[..m], resolves);
        let theta: Vec<f64> = v[m..2 * m].iter().map(|&x| x as f64).collect();
        let alive: Vec<bool> = v[2 * m..3 * m].iter().map(|&d| d == 0.0).collect();
        if let Some(change) = self.theta_change(&theta, &alive) {
            self.st.health.observe_theta_change(change);
        }
        self.st.last_theta = Some((self.st.step, theta.clone()));
        let arch = self.res.cfg.sae.architecture;
        let global_threshold = (arch == Architecture::BatchTopK)
            .then(|| theta.first().map(|t| 10f64.powf(*t)))
            .flatten();
        let theta_hist = match arch {
            Architecture::JumpRelu | Architecture::BatchTopK => theta_histogram(theta),
            Architecture::TopK | Architecture::Relu => theta_histogram(self.stand_in(&x)),
        };
        self.st.firing.reset_window();
        let t = self.st.step.saturating_sub(1);
        MetricsRecord {
            step: self.st.step,
            tokens: self.st.tokens_seen,
            loss: p.loss,
            mse_scaled: p.mse,
            mse_norm,
            sparsity: p.sparsity,
            pre_act: p.pre_act,
            l0: p.l0,
            explained_variance: 1.0 - fvu,
            dead,
            dead_fraction: dead as f64 / m as f64,
            dead_window_tokens: self.res.cfg.hyper.dead_window_tokens,
            lr: lr_at(t, &self.res.cfg.hyper, self.res.cfg.total_steps()),
            sparsity_coefficient: lambda_at(t, &self.res.cfg.hyper),
            tokens_per_s,
            skipped_rows: self.st.skipped_rows,
            epoch: self.st.position.epoch,
            data_wait_fraction,
            sparse_fraction,
            firing_hist,
            theta_hist,
            global_threshold,
            matryoshka_fvu,
            elapsed_s: started.elapsed().as_secs_f64(),
        }
    }

    /// What stands in for θ where there is none, log10 in raw units, from the batch `x`: each
    /// token's k-th largest pre-activation (TopK: its effective threshold), or each firing
    /// feature's mean non-zero activation (ReLU).
    fn stand_in(&self, x: &Tensor<2>) -> Vec<f64> {
        let x_in = if self.res.cfg.sae.pre_encoder_bias {
            x.clone() - self.st.sae.b_dec.clone().unsqueeze_dim::<2>(0)
        } else {
            x.clone()
        };
        let r = (x_in.matmul(self.st.sae.w_enc.clone())
            + self.st.sae.b_enc.clone().unsqueeze_dim::<2>(0))
        .clamp_min(0.0);
        let [_, m] = r.dims();
        let values = if self.res.cfg.sae.architecture == Architecture::TopK {
            let k = self.res.cfg.hyper.k.clamp(1, m);
            r.topk(k, 1).narrow(1, k - 1, 1).reshape([-1])
        } else {
            let count = r.clone().greater_elem(0.0).float().sum_dim(0);
            (r.sum_dim(0) / count).reshape([-1])
        };
        download(&(values * self.st.scale))
            .into_iter()
            .map(|v| (v as f64).log10())
            .collect()
    }
}

impl Trainer {
    /// The median over the live features of |Δ ln θ| since the previous report, per 1,000 steps
    /// (the relative change of θ); `None` at the first report or when every feature is dead.
    // Dead features are left out: their θ gets no gradient by definition, and counting them
    // would call a run with over half its features dead "frozen", which is dead-rising's news.
    fn theta_change(&self, log10_theta: &[f64], alive: &[bool]) -> Option<f64> {
        let (at, before) = self.st.last_theta.as_ref()?;
        let steps = self.st.step.checked_sub(*at).filter(|&s| s > 0)? as f64;
        let mut change: Vec<f64> = log10_theta
            .iter()
            .zip(before)
            .zip(alive)
            .filter(|(_, alive)| **alive)
            .map(|((a, b), _)| ((a - b) * std::f64::consts::LN_10).abs())
            .filter(|c| c.is_finite())
            .collect();
        if change.is_empty() {
            return None;
        }
        change.sort_by(f64::total_cmp);
        Some(change[change.len() / 2] * 1000.0 / steps)
    }
}

/// The histogram of log10(firing frequency + 1e-10) over a report window that resolves
/// frequencies down to 1 / `window` (its tokens, or the store's when the store is smaller).
/// Its range follows the data down to that finest frequency,
/// not to 1e-10: it starts at the decade of the rarest feature that fired, and one decade
/// lower when some feature never fired, so that those (at -10) sit alone in the first bars.
fn firing_histogram(log_freq: &[f32], window: f64) -> Histogram {
    let finest = (1.0 / window.max(1.0)).log10().floor();
    let rarest = log_freq
        .iter()
        .map(|&v| v as f64)
        .filter(|&v| v > -9.5)
        .fold(0f64, f64::min)
        .floor()
        .max(finest);
    let silent = log_freq.iter().any(|&v| v as f64 <= -9.5);
    let lo = if silent { rarest - 1.0 } else { rarest }.min(-1.0);
    Histogram::new(log_freq.iter().map(|&v| v as f64), lo, 0.0, HIST_BINS)
}

/// The histogram of log10 θ over the range of its finite values (a unit range around a single
/// value; [-4, 0] when none is finite).
fn theta_histogram(log_theta: Vec<f64>) -> Histogram {
    let finite = log_theta.iter().copied().filter(|t| t.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
        (a.min(t), b.max(t))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (-4.0, 0.0)
    };
    Histogram::new(log_theta, lo, hi, HIST_BINS)
}

#[cfg(test)]
mod tests {
    use super::firing_histogram;

    #[test]
    fn the_firing_range_follows_the_data_and_stops_at_what_the_window_resolves() {
        // the rarest firing feature is in the 1e-3 decade; one never fired: a decade for it
        let h = firing_histogram(&[-1.2, -2.5, -10.0], 20_000.0);
        assert_eq!((h.lo, h.hi), (-4.0, 0.0));
        assert_eq!(
            h.counts[0], 1,
            "the silent feature sits alone in the first bin"
        );
        // 20k tokens resolve 5e-5 at best: nothing is drawn below the 1e-5 decade
        let h = firing_histogram(&[-4.9, -0.5], 20_000.0);
        assert_eq!(h.lo, -5.0);
        let h = firing_histogram(&[-7.0, -0.5], 20_000.0);
        assert_eq!(h.lo, -5.0);
        // everything frequent: the range still spans a decade
        let h = firing_histogram(&[-0.3, -0.2], 1e7);
        assert_eq!(h.lo, -1.0);
        assert_eq!(h.counts.iter().sum::<u64>(), 2);
    }
}
