//! `cargo bench --bench render`: the cost of drawing one full frame of the training screen at
//! 200×60 with long histories (a million steps reported), and of the sweep screen with 16
//! members of 100,000 reports each, against the 5 ms budget.
//!
//! Hand-timed rather than criterion: one number (the median frame) is what the budget is about,
//! and criterion's build would land on every `clippy --all-targets` in CI.

use jumpscope::config::parse;
use jumpscope::metrics::stats::Histogram;
use jumpscope::schema::record::{MetricsRecord, Record};
use jumpscope::train::control::TrainEvent;
use jumpscope::tui::app::{Msg, TrainApp};
use jumpscope::tui::theme::{Palette, Theme};
use jumpscope::tui::view;
use ratatui::Terminal;
use ratatui::backend::{CrosstermBackend, TestBackend};
use std::time::Instant;

const BUDGET_MS: f64 = 5.0;

fn long_run() -> TrainApp {
    run_of(1_000_000, 0)
}

/// A run of `steps` reports, member `m` of a sweep (its curve shifted by `m`).
fn run_of(steps: u64, m: u64) -> TrainApp {
    let sets: Vec<String> = [
        "data.stores=[\"acts.h5\"]",
        "data.batch_size=4096",
        "sae.d_sae=16384",
        "train.steps=1000000",
        "train.sparsity_loss=\"l0_target\"",
        "train.target_l0=32",
        "run.out=\"runs/bench\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = parse("", "bench", &sets)
        .unwrap()
        .validate("bench")
        .unwrap();
    let mut app = TrainApp::new(cfg, "bench".into(), "cpu".into(), 0, steps);
    let theta: Vec<f64> = (0..16384)
        .map(|i| -3.0 + (i % 997) as f64 * 0.003)
        .collect();
    let firing: Vec<f64> = (0..16384)
        .map(|i| -8.0 + (i % 991) as f64 * 0.008)
        .collect();
    let theta_hist = Histogram::new(theta, -3.0, 0.0, 40);
    let firing_hist = Histogram::new(firing, -10.0, 0.0, 40);
    // a report every step of a million-step run: the histories are as full as they get
    for s in 1..=steps {
        let x = s as f64 * (1.0 + m as f64 / 4.0);
        let noise = ((s * 2_654_435_761) % 1000) as f64 / 1000.0;
        app.update(Msg::train(TrainEvent::Record(Record::Metrics(Box::new(
            MetricsRecord {
                step: s,
                tokens: s * 4096,
                loss: 1.0 / (1.0 + x / 5e4),
                mse_scaled: 0.8 / (1.0 + x / 4e4) + 0.01 * noise,
                mse_norm: 0.7 / (1.0 + x / 4e4) + 0.01 * noise,
                sparsity: 40.0,
                pre_act: 0.0,
                l0: 32.0 + 200.0 / (1.0 + x / 2e4) + noise,
                explained_variance: 1.0 - 0.8 / (1.0 + x / 4e4),
                dead: 100 + s / 10_000,
                dead_fraction: 0.01,
                dead_window_tokens: 10_000_000,
                lr: 2e-4,
                sparsity_coefficient: 1e-3,
                tokens_per_s: 5000.0,
                skipped_rows: 0,
                epoch: 0,
                data_wait_fraction: 0.0,
                sparse_fraction: 0.0,
                firing_hist: firing_hist.clone(),
                theta_hist: theta_hist.clone(),
                global_threshold: None,
                matryoshka_fvu: Vec::new(),
                elapsed_s: x,
            },
        )))));
    }
    app
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut app = long_run();
    let theme = Theme::load("dark", Palette::Ansi256).unwrap();
    let frames = 200;

    // layout, widgets and the buffer diff
    let mut test = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let mut buffer_ms = Vec::new();
    for _ in 0..frames {
        let t = Instant::now();
        test.draw(|f| view::draw(f, &app, &theme)).unwrap();
        buffer_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // the same plus the escape sequences a real terminal backend writes, with every cell
    // changed between frames (two themes in turn), the worst case for the diff
    let other = Theme::load("high-contrast", Palette::Ansi256).unwrap();
    let mut term = Terminal::with_options(
        CrosstermBackend::new(std::io::sink()),
        ratatui::TerminalOptions {
            viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 200, 60)),
        },
    )
    .unwrap();
    let mut full_ms = Vec::new();
    for i in 0..frames {
        let th = if i % 2 == 0 { &theme } else { &other };
        let t = Instant::now();
        term.draw(|f| view::draw(f, &app, th)).unwrap();
        full_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // the recent window (the last 4096 reports at full resolution)
    app.window = Some(4000);
    let mut window_ms = Vec::new();
    for i in 0..frames {
        let th = if i % 2 == 0 { &theme } else { &other };
        let t = Instant::now();
        term.draw(|f| view::draw(f, &app, th)).unwrap();
        window_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // the sweep screen: 16 members, each with its own full training screen behind it
    #[allow(clippy::type_complexity)]
    let members: Vec<(String, Vec<(String, toml::Value)>, TrainApp)> = (0..16u64)
        .map(|m| {
            let name = format!("lambda={}e-3", m + 1);
            let varied = vec![(
                "train.sparsity_coefficient".to_string(),
                toml::Value::Float((m + 1) as f64 * 1e-3),
            )];
            (name, varied, run_of(100_000, m))
        })
        .collect();
    let mut sweep = jumpscope::tui::sweep::SweepApp::new("bench".into(), members);
    // trails: the last reports of each member
    for (m, row) in sweep.rows.iter_mut().enumerate() {
        for k in 0..jumpscope::tui::sweep::TRAIL {
            row.trail
                .push_back((30.0 + m as f64 + k as f64, 0.1 + 0.01 * k as f64));
        }
    }
    let mut sweep_ms = Vec::new();
    for i in 0..frames {
        let th = if i % 2 == 0 { &theme } else { &other };
        sweep.selected = i % 16;
        let t = Instant::now();
        term.draw(|f| jumpscope::tui::sweep::view::draw(f, &sweep, th))
            .unwrap();
        sweep_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let sw = median(sweep_ms);

    let (b, f, w) = (median(buffer_ms), median(full_ms), median(window_ms));
    println!("one frame at 200x60, histories of 1,000,000 reports ({frames} frames, median):");
    println!("  drawn into a buffer:             {b:.3} ms");
    println!("  drawn, every cell sent again:    {f:.3} ms");
    println!("  the same, recent-window view:    {w:.3} ms");
    println!("  sweep screen, 16 members:        {sw:.3} ms");
    println!(
        "  budget {BUDGET_MS} ms: {}",
        if f.max(w).max(sw) <= BUDGET_MS {
            "met"
        } else {
            "MISSED"
        }
    );
}
