//! The inspection screen without a terminal: `InspectApp` (keys in, list, sort, filter and
//! selection out) and `TestBackend` snapshots (insta, `tests/it/snapshots/`).

use jumpscope::eval::Evaluation;
use jumpscope::inspect::report::{
    Context, EdgeHistogram, FeatureReport, Inspection, SaeInfo, TopActivation, VERSION,
};
use jumpscope::metrics::stats::Histogram;
use jumpscope::tui::inspect::app::{Column, Filter, InspectApp};
use jumpscope::tui::inspect::view;
use jumpscope::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const M: usize = 40;
const D: usize = 4;

/// A deterministic report: feature i has density (i % 10) / 20 (0 for every tenth: dead).
fn report() -> Inspection {
    let features = (0..M)
        .map(|i| {
            let density = (i % 10) as f64 / 20.0;
            let fired = density > 0.0;
            FeatureReport {
                index: i,
                density,
                mean: if fired {
                    0.5 + (i % 7) as f64 * 0.1
                } else {
                    0.0
                },
                max: if fired {
                    1.0 + (i % 5) as f64 * 0.5
                } else {
                    0.0
                },
                threshold: 0.25 + (i % 3) as f64 * 0.125,
                decoder_norm: 1.0,
                histogram: if fired {
                    EdgeHistogram {
                        edges: (0..=8).map(|b| b as f64 * 0.5).collect(),
                        counts: vec![0, 3, 9, 14, 8, 4, 1, (i % 3) as u64],
                    }
                } else {
                    EdgeHistogram {
                        edges: vec![],
                        counts: vec![],
                    }
                },
                top: if fired {
                    (0..3)
                        .map(|r| TopActivation {
                            position: (i * 100 + r) as u64,
                            activation: 3.0 - r as f64 * 0.5,
                            context: Some(Context {
                                start: (i * 100 + r - 2) as u64,
                                active: 2,
                                ids: vec![1, 2, 3, 4, 5],
                                tokens: Some(
                                    ["The", " cat", " sat", " on", " mats"]
                                        .map(String::from)
                                        .to_vec(),
                                ),
                            }),
                        })
                        .collect()
                } else {
                    vec![]
                },
            }
        })
        .collect();
    Inspection {
        version: VERSION,
        sae: SaeInfo {
            path: "runs/demo/sae".into(),
            format: "saelens".into(),
            d_in: D,
            d_out: D,
            kind: Default::default(),
            d_sae: M,
            architecture: jumpscope::config::Architecture::JumpRelu,
        },
        stores: vec!["acts.h5".into()],
        dataset: "activations".into(),
        recon: Evaluation {
            n_tokens: 10_000,
            l0: 12.5,
            mse_raw: 0.1,
            mse_norm: 0.05,
            fvu: 0.2,
            explained_variance: 0.8,
            silent: 4,
            silent_fraction: 4.0 / 512.0,
        },
        dense: 20,
        dense_threshold: 0.1,
        density_hist: Histogram::new((0..M).map(|i| -((i % 10) as f64) / 2.0), -10.0, 0.0, 40),
        theta_hist: Histogram::new([0.0], 0.0, 1.0, 40),
        decoder_norm_hist: Histogram::new([1.0], 0.5, 1.5, 40),
        context: 2,
        context_note: None,
        features,
    }
}

/// Decoder rows: feature i points along axis i % 4, tilted by i / 40, so the nearest of 0 are
/// 4, 8, 12, … in order.
fn decoder() -> Vec<f32> {
    (0..M)
        .flat_map(|i| {
            let mut r = [0f32; D];
            r[i % D] = 1.0;
            r[(i + 1) % D] = i as f32 / 40.0;
            r
        })
        .collect()
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn typed(app: &mut InspectApp, text: &str) {
    app.on_key(key(KeyCode::Char('/')));
    for c in text.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Enter));
}

fn render(app: &InspectApp, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, app, &Theme::mono())).unwrap();
    t.backend().to_string()
}

#[test]
fn the_table_sorts_by_each_column_and_keeps_the_selection() {
    let mut a = InspectApp::new(report(), None, None);
    // densest first; equal densities by index
    assert_eq!(a.sort, (Column::Density, true));
    assert_eq!(&a.rows[..4], &[9, 19, 29, 39]);
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.current().unwrap().index, 19);
    // → the next column (mean, descending), the selection stays on feature 19
    a.on_key(key(KeyCode::Right));
    assert_eq!(a.sort, (Column::Mean, true));
    assert_eq!(a.current().unwrap().index, 19);
    let means: Vec<f64> = a.rows.iter().map(|&i| a.report.features[i].mean).collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]));
    // r reverses; ← back to density; the index column ascends
    a.on_key(key(KeyCode::Char('r')));
    assert_eq!(a.sort, (Column::Mean, false));
    for _ in 0..2 {
        a.on_key(key(KeyCode::Left));
    }
    assert_eq!(a.sort, (Column::Index, false));
    assert_eq!(&a.rows[..3], &[0, 1, 2]);
    a.on_key(key(KeyCode::End));
    assert_eq!(a.current().unwrap().index, M - 1);
}

#[test]
fn slash_jumps_and_filters() {
    let mut a = InspectApp::new(report(), None, None);
    typed(&mut a, "dead");
    assert_eq!(a.filter, Filter::Dead);
    assert_eq!(a.rows, vec![0, 10, 20, 30]);
    typed(&mut a, "density>0.3");
    assert!(a.rows.iter().all(|&i| a.report.features[i].density >= 0.3));
    assert_eq!(a.rows.len(), 16);
    typed(&mut a, "0.1..0.15");
    assert_eq!(a.rows.len(), 8, "{:?}", a.rows);
    // a number jumps, clearing a filter that hides the feature
    typed(&mut a, "7");
    assert_eq!((a.current().unwrap().index, &a.filter), (7, &Filter::All));
    typed(&mut a, "dense");
    assert_eq!(a.rows.len(), 32);
    // Esc clears the filter; a bad entry and a feature out of range leave a message
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.filter, Filter::All);
    typed(&mut a, "shiny");
    assert!(a.message.as_deref().unwrap().contains("`shiny`"));
    typed(&mut a, "40");
    assert!(
        a.message
            .as_deref()
            .unwrap()
            .contains("40 features (0 to 39)")
    );
    assert_eq!(a.current().unwrap().index, 7);
    a.on_key(key(KeyCode::Char('q')));
    assert!(a.quit);
}

#[test]
fn nearest_features_by_decoder_cosine() {
    let mut a = InspectApp::new(report(), Some(decoder()), None);
    assert!(a.jump(0));
    let near: Vec<usize> = a.nearest().unwrap().iter().map(|n| n.0).collect();
    // same axis, least tilted first
    assert_eq!(&near[..3], &[4, 8, 12]);
    let cos = a.nearest().unwrap()[0].1;
    let want = 1.0 / (1.0f64 + 0.1 * 0.1).sqrt();
    assert!((cos - want).abs() < 1e-6, "{cos} vs {want}");
    let none = InspectApp::new(report(), None, Some("nearest features need the SAE".into()))
        .nearest_cached()
        .is_none();
    assert!(none);
}

#[test]
fn inspect_screen_at_120x40() {
    let mut a = InspectApp::new(report(), Some(decoder()), None);
    a.jump(19);
    let _ = a.nearest();
    insta::assert_snapshot!(render(&a, 120, 40));
}

#[test]
fn inspect_screen_at_160x48() {
    let mut a = InspectApp::new(report(), Some(decoder()), None);
    a.jump(19);
    let _ = a.nearest();
    let shown = render(&a, 160, 48);
    assert!(
        shown.contains("activation, raw units: 0 … 4.0000 (8 bins)"),
        "{shown}"
    );
    insta::assert_snapshot!(shown);
}

#[test]
fn inspect_screen_at_80x24() {
    let mut a = InspectApp::new(report(), None, Some("nearest features need the SAE".into()));
    a.jump(19);
    insta::assert_snapshot!(render(&a, 80, 24));
}

#[test]
fn inspect_help_and_too_small() {
    let mut a = InspectApp::new(report(), None, None);
    a.on_key(key(KeyCode::Char('?')));
    insta::assert_snapshot!(render(&a, 120, 40));
    insta::assert_snapshot!(render(&a, 70, 20));
}
