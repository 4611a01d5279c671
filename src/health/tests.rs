//! Each rule fires on a constructed sequence of reports, once, and clears after the condition
//! has been gone for `clear_after_reports` reports; a healthy sequence raises nothing.

use super::*;
use crate::metrics::stats::Histogram;
use crate::sae::model::Architecture;

const WARMUP: u64 = 100;

fn facts(target: Option<f64>, has_theta: bool) -> RunFacts {
    let architecture = if has_theta {
        Architecture::JumpRelu
    } else {
        Architecture::TopK
    };
    RunFacts {
        d_sae: 1000,
        sparsity_warmup_steps: WARMUP,
        target_l0: target,
        architecture,
    }
}

/// A healthy report at `step`.
fn report(step: u64) -> MetricsRecord {
    let hist = Histogram::new([0.5], 0.0, 1.0, 4);
    MetricsRecord {
        step,
        tokens: step * 64,
        loss: 1.0,
        mse_scaled: 0.8,
        mse_norm: 0.2,
        sparsity: 20.0,
        pre_act: 0.0,
        l0: 20.0,
        explained_variance: 0.8,
        dead: 0,
        dead_fraction: 0.0,
        dead_window_tokens: 1_000_000,
        lr: 1e-3,
        sparsity_coefficient: 0.01,
        tokens_per_s: 1e5,
        skipped_rows: 0,
        epoch: 0,
        data_wait_fraction: 0.0,
        sparse_fraction: 1.0,
        firing_hist: hist.clone(),
        theta_hist: hist,
        global_threshold: None,
        matryoshka_fvu: Vec::new(),
        elapsed_s: step as f64,
    }
}

/// Feed reports made by `make(i)` for i in 0..n (steps from 200 on, after warm-up); return the
/// events of each.
fn run(
    mon: &mut Monitor,
    n: usize,
    make: impl Fn(usize, MetricsRecord) -> MetricsRecord,
) -> Vec<Vec<Event>> {
    (0..n)
        .map(|i| mon.observe(&make(i, report(200 + 10 * i as u64))))
        .collect()
}

fn raised(ev: &[Vec<Event>]) -> Vec<(usize, Kind)> {
    ev.iter()
        .enumerate()
        .flat_map(|(i, e)| {
            e.iter().filter_map(move |x| match x {
                Event::Raised(w) => Some((i, w.kind)),
                _ => None,
            })
        })
        .collect()
}

fn cleared(ev: &[Vec<Event>]) -> Vec<(usize, Kind)> {
    ev.iter()
        .enumerate()
        .flat_map(|(i, e)| {
            e.iter().filter_map(move |x| match x {
                Event::Cleared(k) => Some((i, *k)),
                _ => None,
            })
        })
        .collect()
}

#[test]
fn a_healthy_run_raises_nothing() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(Some(20.0), true));
    for i in 0..60 {
        if i == 1 {
            mon.observe_heldout_fvu(0.22);
        }
        mon.observe_theta_change(1e-2);
        // some noise in the loss and the data wait, all within bounds
        let mut r = report(200 + 10 * i);
        r.loss = 1.0 + 0.3 * ((i % 7) as f64 / 7.0);
        r.data_wait_fraction = if i % 3 == 0 { 0.5 } else { 0.0 };
        r.epoch = i / 10;
        assert!(mon.observe(&r).is_empty(), "report {i}");
    }
    assert!(mon.active().is_empty());
}

#[test]
fn l0_collapse_is_raised_once_and_clears_after_five_good_reports() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let ev = run(&mut mon, 20, |i, mut r| {
        r.l0 = if (3..8).contains(&i) { 0.4 } else { 20.0 };
        r
    });
    assert_eq!(raised(&ev), vec![(3, Kind::L0Collapse)]);
    // absent at reports 8..12: cleared at the fifth
    assert_eq!(cleared(&ev), vec![(12, Kind::L0Collapse)]);
    let Event::Raised(w) = &ev[3][0] else {
        panic!()
    };
    assert!(w.message.contains("L0 is 0.40"), "{}", w.message);
    assert!(w.hint.contains("train.sparsity_coefficient"));
    assert_eq!(w.values["l0"], 0.4);
}

#[test]
fn sparsity_rules_wait_for_the_warm_up() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let mut r = report(WARMUP - 1);
    r.l0 = 0.0;
    r.sparsity_coefficient = 100.0;
    assert!(mon.observe(&r).is_empty());
    r.step = WARMUP;
    let kinds: Vec<Kind> = mon
        .observe(&r)
        .iter()
        .filter_map(|e| match e {
            Event::Raised(w) => Some(w.kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec![Kind::L0Collapse, Kind::SparsityDominates]);
}

#[test]
fn l0_runaway_is_above_a_tenth_of_d_sae() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let ev = run(&mut mon, 3, |i, mut r| {
        r.l0 = [100.0, 100.5, 99.0][i];
        r
    });
    assert_eq!(raised(&ev), vec![(1, Kind::L0Runaway)]);
}

#[test]
fn a_loss_spike_is_three_times_the_recent_median() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let ev = run(&mut mon, 20, |i, mut r| {
        r.loss = match i {
            2 => 50.0, // too early: fewer than 5 reports before it
            10 => 2.9,
            11 => 3.1,
            _ => 1.0,
        };
        r
    });
    assert_eq!(raised(&ev), vec![(11, Kind::LossSpike)]);
    assert_eq!(cleared(&ev), vec![(16, Kind::LossSpike)]);
}

#[test]
fn a_loss_redefined_by_an_edit_is_not_a_spike() {
    // the loss quadruples from report 8 on because an edit added a term after report 7
    // (step 270); later losses are compared with each other once there are 5 of them
    let steps = |mon: &mut Monitor, redefine: bool| {
        let mut ev = Vec::new();
        for i in 0..20u64 {
            let mut r = report(200 + 10 * i);
            r.loss = if i < 8 { 1.0 } else { 4.0 };
            if i == 16 {
                r.loss = 13.0;
            }
            ev.push(mon.observe(&r));
            if redefine && i == 7 {
                mon.loss_redefined(270);
            }
        }
        ev
    };
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    assert_eq!(raised(&steps(&mut mon, false)), vec![(8, Kind::LossSpike)]);
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    // the spike at report 16 (13 > 3 × 4) is still seen, against the new losses alone
    assert_eq!(raised(&steps(&mut mon, true)), vec![(16, Kind::LossSpike)]);
}

#[test]
fn dead_features_rising_past_ten_percent() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let fractions = [
        0.02, 0.05, 0.08, 0.09, 0.11, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12,
    ];
    let ev = run(&mut mon, fractions.len(), |i, mut r| {
        r.dead_fraction = fractions[i];
        r
    });
    // rising over the last 5 reports and above 10 % at report 4; no longer rising once the
    // window is all 0.12 (report 9), cleared at the fifth report without it (13)
    assert_eq!(raised(&ev), vec![(4, Kind::DeadRising)]);
    assert_eq!(cleared(&ev), vec![(13, Kind::DeadRising)]);
    // a noisy rise is one episode: a report below the one before it does not clear it
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let fractions = [
        0.02, 0.05, 0.12, 0.11, 0.13, 0.15, 0.14, 0.16, 0.15, 0.18, 0.17, 0.19, 0.18, 0.20,
    ];
    let ev = run(&mut mon, fractions.len(), |i, mut r| {
        r.dead_fraction = fractions[i];
        r
    });
    assert_eq!(raised(&ev), vec![(4, Kind::DeadRising)]);
    assert_eq!(cleared(&ev), vec![]);
}

#[test]
fn data_bound_after_three_slow_reports_in_a_row() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let ev = run(&mut mon, 8, |i, mut r| {
        r.data_wait_fraction = [0.5, 0.5, 0.1, 0.4, 0.4, 0.6, 0.1, 0.0][i];
        r
    });
    assert_eq!(raised(&ev), vec![(5, Kind::DataBound)]);
}

#[test]
fn overfitting_needs_the_third_epoch_and_a_gap() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    // before any report there is no training FVU to compare with
    mon.observe_heldout_fvu(0.9);
    let ev = run(&mut mon, 3, |_, mut r| {
        r.epoch = 2;
        r
    });
    assert_eq!(raised(&ev), vec![]);
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    let fvu = [0.1, 0.3, 0.2, 0.2, 0.25, 0.2, 0.2, 0.2];
    let ev = run(&mut mon, 5, |i, mut r| {
        r.explained_variance = 1.0 - fvu[i];
        r.epoch = 1;
        r
    });
    assert_eq!(raised(&ev), vec![]);
    // training FVU then: the median 0.2 of the last five reports; a gap of 0.15
    mon.observe_heldout_fvu(0.35);
    let ev = run(&mut mon, 4, |i, mut r| {
        r.epoch = [1, 1, 2, 2][i];
        r
    });
    assert_eq!(raised(&ev), vec![(2, Kind::Overfitting)]);
    // a later training FVU does not change the comparison made at the evaluation
    let ev = run(&mut mon, 1, |_, mut r| {
        r.explained_variance = 0.99;
        r.epoch = 2;
        r
    });
    assert_eq!(raised(&ev), vec![]);
    // a smaller gap after more data: absent, and cleared after five reports
    mon.observe_heldout_fvu(0.25);
    let ev = run(&mut mon, 5, |_, mut r| {
        r.epoch = 3;
        r
    });
    assert_eq!(cleared(&ev), vec![(4, Kind::Overfitting)]);
}

#[test]
fn a_frozen_threshold_with_l0_far_from_its_target() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(Some(20.0), true));
    mon.observe_theta_change(1e-4);
    // within [0.67, 1.5] × target: not flagged; at 2× target: flagged
    assert!(mon.observe(&report(200)).is_empty());
    let mut r = report(210);
    r.l0 = 40.0;
    assert!(matches!(&mon.observe(&r)[..], [Event::Raised(w)] if w.kind == Kind::ThresholdFrozen));
    // θ moving again clears it after five reports
    mon.observe_theta_change(1e-2);
    let ev = run(&mut mon, 5, |_, mut r| {
        r.l0 = 40.0;
        r
    });
    assert_eq!(cleared(&ev), vec![(4, Kind::ThresholdFrozen)]);
}

#[test]
fn a_frozen_threshold_without_a_target_while_l0_still_falls() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    mon.observe_theta_change(1e-4);
    let ev = run(&mut mon, 8, |i, mut r| {
        r.l0 = 90.0 - 10.0 * i as f64;
        r
    });
    assert_eq!(raised(&ev), vec![(4, Kind::ThresholdFrozen)]);
    // falling into a collapse is l0-collapse's warning alone
    let mut mon = Monitor::new(HealthConfig::default(), facts(None, true));
    mon.observe_theta_change(1e-4);
    let ev = run(&mut mon, 8, |i, mut r| {
        r.l0 = 0.9 - 0.1 * i as f64;
        r
    });
    assert_eq!(raised(&ev), vec![(0, Kind::L0Collapse)]);
}

#[test]
fn rules_can_be_switched_off_and_theta_rules_skip_architectures_without_theta() {
    let mut mon = Monitor::new(HealthConfig::default(), facts(Some(20.0), false));
    assert!(!mon.checked().contains(&Kind::ThresholdFrozen));
    assert_eq!(mon.checked().len(), Kind::ALL.len() - 1);
    mon.observe_theta_change(0.0);
    let mut r = report(200);
    r.l0 = 0.5;
    let ev = mon.observe(&r);
    assert!(matches!(&ev[..], [Event::Raised(w)] if w.kind == Kind::L0Collapse));
    // switching the rule off (a live edit) clears its warning at the next report
    let mut cfg = HealthConfig::default();
    cfg.disabled.insert(Kind::L0Collapse);
    mon.set_config(cfg);
    assert_eq!(mon.observe(&r), vec![Event::Cleared(Kind::L0Collapse)]);
    assert!(mon.observe(&r).is_empty());
    mon.set_config(HealthConfig {
        enabled: false,
        ..HealthConfig::default()
    });
    assert!(mon.checked().is_empty());
    r.loss = 1e9;
    assert!(mon.observe(&r).is_empty());
}

#[test]
fn kinds_serialise_by_their_names() {
    for k in Kind::ALL {
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            format!("\"{}\"", k.name())
        );
    }
    let cfg: HealthConfig =
        toml::from_str("disabled = [\"loss-spike\"]\nspike_factor = 5.0\n").unwrap();
    assert!(cfg.disabled.contains(&Kind::LossSpike));
    assert_eq!(cfg.spike_factor, 5.0);
    assert_eq!(cfg.dead_reports, 5);
    assert!(toml::from_str::<HealthConfig>("spike_facto = 5.0\n").is_err());
}
