//! Synthetic activations with known features (docs/training.md, "Synthetic data with known features"),
//! paired targets with known output directions for transcoders, and the recovery measure MMCS.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// Activation width d.
    pub d_in: usize,
    /// Number of ground-truth features G.
    pub features: usize,
    /// Expected number of active features per token K.
    pub mean_active: f64,
    /// Tokens to generate.
    pub tokens: usize,
    /// Standard deviation of added Gaussian noise per dimension.
    pub noise: f64,
    /// RNG seed.
    pub seed: u64,
}

/// Generated data with its ground truth.
#[derive(Debug, Clone)]
pub struct Synth {
    /// `[tokens, d_in]`
    pub activations: Vec<f32>,
    /// `[features, d_in]`, unit rows.
    pub directions: Vec<f32>,
    /// Firing probability of each feature.
    pub probs: Vec<f32>,
}

/// Firing probabilities p_k ∝ 0.99^k scaled so that Σ p_k = K (each capped at 1).
pub fn firing_probs(features: usize, mean_active: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..features).map(|k| 0.99f64.powi(k as i32)).collect();
    let mut scale = mean_active / raw.iter().sum::<f64>();
    // capping at 1 loses mass; rescale the uncapped ones until the sum is right
    for _ in 0..50 {
        let s: f64 = raw.iter().map(|p| (p * scale).min(1.0)).sum();
        if (s - mean_active).abs() < 1e-9 || s >= features as f64 {
            break;
        }
        scale *= mean_active / s;
    }
    raw.iter().map(|p| (p * scale).min(1.0)).collect()
}

/// Generate `spec.tokens` rows x = Σ_k c_k g_k + noise with c_k ~ U[0,1] when feature k fires.
pub fn generate(spec: &SynthSpec) -> Synth {
    draw(spec, None).0
}

/// A transcoder's synthetic target: what the same features write to another site.
#[derive(Debug, Clone)]
pub struct Targets {
    /// `[tokens, d_out]`: y = Σ_k c_k h_k + noise, the same c_k as the input row's.
    pub activations: Vec<f32>,
    /// `[features, d_out]` h_k, unit rows: the true decoder of a transcoder.
    pub directions: Vec<f32>,
}

/// Input rows as [`generate`] makes them (the same rows for the same spec), and paired target
/// rows of width `d_out` in which each active feature k writes c_k h_k instead of c_k g_k: a
/// sparse map from one site to another whose true transcoder is known.
pub fn generate_pairs(spec: &SynthSpec, d_out: usize) -> (Synth, Targets) {
    let (s, t) = draw(spec, Some(d_out));
    (s, t.expect("targets were asked for"))
}

/// Unit rows of `n` random directions in `d` dimensions.
fn unit_rows(n: usize, d: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * d).map(|_| StandardNormal.sample(rng)).collect();
    for row in v.chunks_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    }
    v
}

/// The rows of [`generate`], and with `d_out` their targets, drawn from a second generator so
/// that the inputs do not depend on whether targets were asked for.
fn draw(spec: &SynthSpec, d_out: Option<usize>) -> (Synth, Option<Targets>) {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let (d, g) = (spec.d_in, spec.features);
    let directions = unit_rows(g, d, &mut rng);
    let mut out_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed_7a26_e7c0_de00);
    let mut targets = d_out.map(|e| Targets {
        activations: vec![0.0f32; spec.tokens * e],
        directions: unit_rows(g, e, &mut out_rng),
    });
    let probs = firing_probs(g, spec.mean_active);
    let mut activations = vec![0.0f32; spec.tokens * d];
    for (r, x) in activations.chunks_mut(d).enumerate() {
        for (k, &p) in probs.iter().enumerate() {
            if rng.random::<f64>() < p {
                let c: f32 = rng.random();
                let dir = &directions[k * d..(k + 1) * d];
                x.iter_mut().zip(dir).for_each(|(a, b)| *a += c * b);
                if let (Some(t), Some(e)) = (targets.as_mut(), d_out) {
                    let h = &t.directions[k * e..(k + 1) * e];
                    let y = &mut t.activations[r * e..(r + 1) * e];
                    y.iter_mut().zip(h).for_each(|(a, b)| *a += c * b);
                }
            }
        }
        if spec.noise > 0.0 {
            for a in x.iter_mut() {
                let n: f64 = StandardNormal.sample(&mut rng);
                *a += (n * spec.noise) as f32;
            }
            if let (Some(t), Some(e)) = (targets.as_mut(), d_out) {
                for a in t.activations[r * e..(r + 1) * e].iter_mut() {
                    let n: f64 = StandardNormal.sample(&mut out_rng);
                    *a += (n * spec.noise) as f32;
                }
            }
        }
    }
    let synth = Synth {
        activations,
        directions,
        probs: probs.iter().map(|&p| p as f32).collect(),
    };
    (synth, targets)
}

/// MMCS: mean over true directions of the best cosine similarity with any learned decoder row.
/// `learned` is `[n, d]`, `truth` is `[g, d]`.
pub fn mmcs(learned: &[f32], truth: &[f32], d: usize) -> f64 {
    let unit = |v: &[f32]| -> Vec<f32> {
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|a| a / n).collect()
    };
    let learned: Vec<Vec<f32>> = learned.chunks(d).map(unit).collect();
    let truth: Vec<Vec<f32>> = truth.chunks(d).map(unit).collect();
    let total: f64 = truth
        .iter()
        .map(|t| {
            learned
                .iter()
                .map(|l| l.iter().zip(t).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::MIN, f32::max) as f64
        })
        .sum();
    total / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_have_the_same_inputs_and_targets_from_the_same_features() {
        let spec = SynthSpec {
            d_in: 6,
            features: 10,
            mean_active: 2.0,
            tokens: 50,
            noise: 0.0,
            seed: 4,
        };
        let plain = generate(&spec);
        let (s, t) = generate_pairs(&spec, 9);
        assert_eq!(s.activations, plain.activations);
        assert_eq!(t.activations.len(), 50 * 9);
        // a row with no active feature is zero at both sites, and only such rows are
        for (x, y) in s.activations.chunks(6).zip(t.activations.chunks(9)) {
            let zero = |v: &[f32]| v.iter().all(|a| *a == 0.0);
            assert_eq!(zero(x), zero(y));
        }
        assert!(t.activations.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn probabilities_sum_to_the_mean_active_count() {
        let p = firing_probs(256, 5.0);
        assert!((p.iter().sum::<f64>() - 5.0).abs() < 1e-9);
        assert!(p.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn mmcs_is_one_for_the_truth_and_lower_for_noise() {
        let s = generate(&SynthSpec {
            d_in: 16,
            features: 32,
            mean_active: 3.0,
            tokens: 10,
            noise: 0.0,
            seed: 1,
        });
        assert!((mmcs(&s.directions, &s.directions, 16) - 1.0).abs() < 1e-6);
        let other = generate(&SynthSpec {
            seed: 2,
            ..SynthSpec {
                d_in: 16,
                features: 32,
                mean_active: 3.0,
                tokens: 10,
                noise: 0.0,
                seed: 0,
            }
        });
        assert!(mmcs(&other.directions, &s.directions, 16) < 0.9);
    }
}
