//! Learning-rate and sparsity-coefficient schedules (docs/training.md, "The recipe"); t is the 0-based step.

use crate::config::Hyper;

/// η_t: cosine warm-up from 0.1η to η over `lr_warmup_steps`, constant, then (optionally) linear
/// decay to 0 over the final `lr_decay_fraction` of `total_steps`.
pub fn lr_at(t: u64, h: &Hyper, total_steps: u64) -> f64 {
    let w = h.lr_warmup_steps;
    let mut lr = if w > 0 && t < w {
        let c = (std::f64::consts::PI * t as f64 / w as f64).cos();
        h.lr * (0.1 + 0.9 * (1.0 - c) / 2.0)
    } else {
        h.lr
    };
    if h.lr_decay_fraction > 0.0 {
        let decay_steps = (h.lr_decay_fraction * total_steps as f64).max(1.0);
        let start = total_steps as f64 - decay_steps;
        if (t as f64) >= start {
            lr *= ((total_steps as f64 - t as f64) / decay_steps).clamp(0.0, 1.0);
        }
    }
    lr
}

/// λ_t = λ · min(1, t / sparsity_warmup_steps).
pub fn lambda_at(t: u64, h: &Hyper) -> f64 {
    let w = h.sparsity_warmup_steps;
    if w > 0 {
        h.sparsity_coefficient * (t as f64 / w as f64).min(1.0)
    } else {
        h.sparsity_coefficient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn hyper(sets: &[&str]) -> Hyper {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        parse("", "t", &sets).unwrap().validate("t").unwrap().hyper
    }

    #[test]
    fn warmups_match_the_reference_formulas() {
        let h = hyper(&[
            "train.lr=1e-3",
            "train.lr_warmup_steps=3",
            "train.sparsity_warmup_steps=4",
        ]);
        // reference: lr*(0.1 + 0.9*(1-cos(pi*t/w))/2)
        assert!((lr_at(0, &h, 10) - 1e-4).abs() < 1e-15);
        assert!((lr_at(1, &h, 10) - 3.25e-4).abs() < 1e-12);
        assert_eq!(lr_at(3, &h, 10), 1e-3);
        assert_eq!(lambda_at(1, &h), 1e-3 * 0.25);
        assert_eq!(lambda_at(9, &h), 1e-3);
    }

    #[test]
    fn decay_reaches_zero_at_the_end() {
        let h = hyper(&[
            "train.lr=1.0",
            "train.lr_warmup_steps=0",
            "train.lr_decay_fraction=0.5",
        ]);
        assert_eq!(lr_at(0, &h, 100), 1.0);
        assert_eq!(lr_at(50, &h, 100), 1.0);
        assert!((lr_at(75, &h, 100) - 0.5).abs() < 1e-12);
        assert!((lr_at(99, &h, 100) - 0.02).abs() < 1e-12);
    }
}
