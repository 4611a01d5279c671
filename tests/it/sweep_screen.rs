//! The sweep screen (and `compare`'s) without a terminal: `SweepApp::update` (member events, sweep records and
//! keys in; state and controls out) and `TestBackend` snapshots (insta, `tests/it/snapshots/`).

use crate::common::Cfg;
use jumpscope::config::Config;
use jumpscope::eval::Evaluation;
use jumpscope::metrics::stats::Histogram;
use jumpscope::schema::record::{MetricsRecord, Record};
use jumpscope::schema::sweep::{MemberState, SweepRecord};
use jumpscope::train::control::{Control, TrainEvent};
use jumpscope::train::control::{JobControl, JobEvent};
use jumpscope::tui::app::{Ending, TrainApp};
use jumpscope::tui::msg::Msg;
use jumpscope::tui::sweep::{Column, SweepApp, view};
use jumpscope::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::Path;

fn config(extra: &[&str]) -> Config {
    Cfg::on(Path::new("acts.h5"))
        .out(Path::new("runs/sw/m"))
        .with(&[
            "data.batch_size=4096",
            "sae.d_sae=16384",
            "train.steps=1000",
            "train.lr=0.0002",
        ])
        .with(extra)
        .build()
}

/// Four members: three JumpReLU λs and a TopK.
fn sweep_app() -> SweepApp {
    let members = [
        ("lambda=1e-3", &["train.sparsity_coefficient=0.001"][..]),
        ("lambda=3e-3", &["train.sparsity_coefficient=0.003"][..]),
        ("lambda=1e-2", &["train.sparsity_coefficient=0.01"][..]),
        ("arch=topk", &["sae.architecture=\"topk\"", "sae.k=32"][..]),
    ];
    SweepApp::new(
        "sweep1".into(),
        members
            .iter()
            .map(|(name, sets)| {
                let app = TrainApp::new(config(sets), name.to_string(), "cpu".into(), 0, 1000);
                // the values the sets give, typed
                let varied = sets
                    .iter()
                    .map(|s| {
                        let (k, v) = s.split_once('=').unwrap();
                        let v: toml::Table = format!("v = {v}").parse().unwrap();
                        (k.to_string(), v["v"].clone())
                    })
                    .collect();
                (name.to_string(), varied, app)
            })
            .collect(),
    )
}

fn member(i: usize, r: Record) -> Msg {
    Msg::Job(JobEvent::Member(i, TrainEvent::Record(r)))
}

fn started(i: usize) -> Msg {
    member(
        i,
        Record::Start {
            step: 0,
            tokens: 0,
            d_in: 512,
            d_sae: 16384,
            architecture: jumpscope::config::Architecture::JumpRelu,
            kind: Default::default(),
            d_out: None,
            scale: 1.5,
            device: "cpu".into(),
            store_attributes: Default::default(),
            memory_estimate: None,
            memory_available: None,
        },
    )
}

/// Member `i`'s report at step `s`: sparser and worse the larger `i`.
fn metrics(i: usize, s: u64) -> Msg {
    let x = s as f64;
    let l0 = (80.0 / (i as f64 + 1.0)) * (1.0 + 20.0 / (x + 10.0));
    let ev = 0.95 - 0.08 * i as f64 - 3.0 / (x + 10.0);
    member(
        i,
        Record::Metrics(Box::new(MetricsRecord {
            step: s,
            tokens: s * 4096,
            loss: 1.0 - ev,
            mse_scaled: (1.0 - ev) * 0.5,
            mse_norm: (1.0 - ev) * 0.4,
            sparsity: l0,
            pre_act: 0.0,
            l0,
            explained_variance: ev,
            dead: 10 * i as u64,
            dead_fraction: 10.0 * i as f64 / 16384.0,
            dead_window_tokens: 10_000_000,
            lr: 2e-4,
            sparsity_coefficient: 1e-3,
            tokens_per_s: 20000.0,
            skipped_rows: 0,
            epoch: 0,
            data_wait_fraction: 0.0,
            sparse_fraction: 0.0,
            firing_hist: Histogram::new(vec![-3.0, -2.0], -10.0, 0.0, 40),
            theta_hist: Histogram::new(vec![-1.0, -0.5], -3.0, 0.0, 40),
            global_threshold: None,
            matryoshka_fvu: Vec::new(),
            elapsed_s: x,
        })),
    )
}

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

/// A sweep 200 steps in: member 3 (λ = 1e-2) failed, member 2 evaluated on held-out rows.
fn busy() -> SweepApp {
    let mut a = sweep_app();
    for i in 0..4 {
        a.update(started(i));
    }
    for s in (20..=200).step_by(20) {
        for i in 0..4 {
            if i == 2 && s > 120 {
                continue;
            }
            a.update(metrics(i, s));
        }
    }
    a.update(member(
        1,
        Record::Eval {
            step: 200,
            tokens: 200 * 4096,
            eval: Evaluation {
                n_tokens: 8192,
                l0: 40.0,
                mse_raw: 0.05,
                mse_norm: 0.04,
                fvu: 0.071,
                explained_variance: 0.929,
                silent: 3,
                silent_fraction: 3.0 / 16384.0,
            },
        },
    ));
    // the TopK member's L0 collapsed: its health column says so
    a.update(member(
        3,
        Record::Warning {
            step: 180,
            tokens: 180 * 4096,
            kind: jumpscope::schema::health::Kind::L0Collapse,
            message: "L0 fell to 0.4".into(),
            hint: "lower the sparsity coefficient".into(),
            values: Default::default(),
        },
    ));
    a.update(Msg::Job(JobEvent::Sweep(SweepRecord::Member {
        step: 130,
        name: "lambda=1e-2".into(),
        state: MemberState::Failed,
        member_step: 125,
        reason: Some("loss is not finite at step 121".into()),
    })));
    a
}

fn render(a: &SweepApp, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, a, &Theme::mono())).unwrap();
    t.backend().to_string()
}

fn sent(c: &[JobControl]) -> Vec<(Option<usize>, String)> {
    c.iter()
        .map(|c| {
            let what = match &c.control {
                Control::SetHyper(e) => format!("set {:?}", e.changes.keys().collect::<Vec<_>>()),
                other => format!("{other:?}"),
            };
            (c.member, what)
        })
        .collect()
}

#[test]
fn the_table_selects_sorts_and_opens_members() {
    let mut a = busy();
    assert_eq!(a.selected, 0);
    a.update(ch('j'));
    assert_eq!(a.selected, 1);
    // sort by L0 (# → name → varied → arch → step → L0), descending: the densest member first
    for _ in 0..5 {
        a.update(ch('s'));
    }
    a.update(ch('r'));
    assert_eq!(a.sort, (Column::L0, true));
    assert_eq!(a.order(), [0, 1, 2, 3]);
    a.update(ch('r'));
    assert_eq!(a.order(), [3, 2, 1, 0]);
    // j follows the table's order
    a.selected = 3;
    a.update(ch('j'));
    assert_eq!(a.selected, 2);
    a.update(key(KeyCode::Enter));
    assert_eq!(a.open, Some(2));
    a.update(key(KeyCode::Esc));
    assert_eq!(a.open, None);
    assert_eq!(a.rows[2].state, MemberState::Failed);
    // the points: held-out FVU where evaluated
    assert_eq!(a.rows[1].fvu(), Some((0.071, true)));
    assert!(matches!(a.rows[0].fvu(), Some((_, false))));
    assert_eq!(a.rows[0].trail.len(), jumpscope::tui::sweep::TRAIL.min(10));
}

#[test]
fn pause_checkpoint_and_stop_ask_first_and_act_per_member_or_all() {
    let mut a = busy();
    a.selected = 1;
    assert!(a.update(ch('p')).is_empty(), "asks first");
    assert!(a.ask.is_some());
    assert_eq!(sent(&a.update(ch('y'))), [(Some(1), "Pause".into())]);
    a.update(ch('x'));
    assert!(a.update(ch('n')).is_empty(), "no: nothing sent");
    a.update(ch('x'));
    assert_eq!(
        sent(&a.update(key(KeyCode::Enter))),
        [(Some(1), "Stop".into())]
    );
    a.update(ch('C'));
    assert_eq!(sent(&a.update(ch('y'))), [(None, "Checkpoint".into())]);
    a.update(ch('P'));
    assert_eq!(sent(&a.update(ch('y'))), [(None, "Pause".into())]);
    // q asks; yes stops every member and leaves once the sweep returned
    a.update(ch('q'));
    assert_eq!(sent(&a.update(ch('y'))), [(None, "Stop".into())]);
    assert!(a.stopping && !a.quit);
    a.update(Msg::Finished(Ending::Done));
    assert!(a.quit);
    // Ctrl-C stops at once
    let mut b = busy();
    let c = b.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(sent(&c), [(None, "Stop".into())]);
}

#[test]
fn value_keys_act_on_the_selected_member_or_on_all_that_take_the_key() {
    let mut a = busy();
    a.selected = 0;
    // the selected value of a JumpReLU screen: its first tunable
    let key0 = a.rows[0].app.tunables()[0].key;
    let c = a.update(key(KeyCode::Right));
    assert_eq!(c.len(), 1, "{:?}", sent(&c));
    assert_eq!(c[0].member, Some(0));
    // the sweep log says which value was stepped, from what to what
    let said = a.log.back().cloned().unwrap_or_default();
    assert!(
        said.starts_with("lambda=1e-3: ") && said.contains(key0.name) && said.contains(" → "),
        "{said}"
    );
    // on a member's own screen with A: every live member that takes the key gets the value
    a.update(key(KeyCode::Enter));
    a.update(ch('A'));
    assert!(a.to_all);
    let c = a.update(key(KeyCode::Right));
    let to: Vec<Option<usize>> = c.iter().map(|c| c.member).collect();
    // member 2 failed; the TopK member takes the key only if its screen lists it
    let topk_takes = a.rows[3].app.tunables().iter().any(|t| t.key == key0);
    let mut want = vec![Some(1)];
    if topk_takes {
        want.push(Some(3));
    }
    want.push(Some(0));
    assert_eq!(to, want, "{key0}: {:?}", sent(&c));
    let v0 = a.rows[0].app.tunables()[0].get(&a.rows[0].app.config.hyper);
    let v1 = a.rows[1].app.tunables()[0].get(&a.rows[1].app.config.hyper);
    assert_eq!(v0, v1, "the same value");
    // q on a member's screen is the sweep's question
    a.update(ch('q'));
    assert!(a.ask.is_some());
}

#[test]
fn sweep_screen_snapshots() {
    let a = busy();
    insta::assert_snapshot!("sweep_120x40", render(&a, 120, 40));
    insta::assert_snapshot!("sweep_80x24", render(&a, 80, 24));
    let mut b = busy();
    b.update(ch('x'));
    insta::assert_snapshot!("sweep_confirm", render(&b, 80, 24));
    let mut c = busy();
    c.update(ch('j'));
    c.update(key(KeyCode::Enter));
    insta::assert_snapshot!("sweep_member_open", render(&c, 100, 30));
    insta::assert_snapshot!("sweep_too_small", render(&busy(), 60, 20));
    insta::assert_snapshot!("sweep_160x40", render(&busy(), 160, 40));
    let big = render(&busy(), 160, 48);
    // the frontier chart's axes are ticked and named, the dead column a count with its share
    assert!(
        big.contains("L0 (log scale)") && big.contains(" FVU│"),
        "{big}"
    );
    assert!(big.contains("10 (0.1%)"), "{big}");
    insta::assert_snapshot!("sweep_160x48", big);
}

#[test]
fn compare_screen_snapshot() {
    use jumpscope::compare::Entry;
    let entry = |name: &str, arch: &str, l0: f64, fvu: f64, front: bool, dlm: f64| Entry {
        name: name.into(),
        path: format!("runs/sw/{name}").into(),
        architecture: arch.into(),
        kind: Default::default(),
        d_in: 512,
        d_out: 512,
        d_sae: 4096,
        hyper: [
            (
                "train.sparsity_coefficient".to_string(),
                jumpscope::compare::HyperValue::Real(0.003),
            ),
            (
                "train.lr".to_string(),
                jumpscope::compare::HyperValue::Real(0.0002),
            ),
        ]
        .into(),
        l0,
        mse_norm: fvu / 3.0,
        fvu,
        inactive: Some(jumpscope::metrics::stats::Inactive {
            measure: jumpscope::metrics::stats::Measure::Silent,
            count: 12,
            fraction: 12.0 / 16384.0,
            tokens: 65536,
        }),
        basis: jumpscope::compare::Basis::Store {
            tokens: 65536,
            held_out: false,
        },
        on_frontier: front,
        delta_lm_loss: Some(dlm),
        ce_recovered: Some(1.0 - dlm / 4.0),
        kl: Some(dlm * 0.9),
    };
    let entries = [
        entry("lambda=1e-3", "jumprelu", 80.0, 0.08, true, 0.12),
        entry("lambda=3e-3", "jumprelu", 40.0, 0.15, false, 0.35),
        entry("arch=topk", "topk", 32.0, 0.11, true, 0.21),
    ];
    use jumpscope::tui::widgets::frontier::YAxis;
    let mut t = Terminal::new(TestBackend::new(150, 30)).unwrap();
    t.draw(|f| jumpscope::tui::compare::draw(f, &entries, 1, YAxis::Fvu, &Theme::mono()))
        .unwrap();
    insta::assert_snapshot!("compare_150x30", t.backend().to_string());
    // `y`: the same SAEs by ΔLM loss, the axes named and ticked on the chart
    t.draw(|f| jumpscope::tui::compare::draw(f, &entries, 1, YAxis::DeltaLm, &Theme::mono()))
        .unwrap();
    let shown = t.backend().to_string();
    assert!(shown.contains(" ΔLM│"), "{shown}");
    assert!(shown.contains("L0 (log scale)"), "{shown}");
    insta::assert_snapshot!("compare_delta_lm_150x30", shown);
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| jumpscope::tui::compare::draw(f, &entries, 1, YAxis::Fvu, &Theme::mono()))
            .unwrap();
        let shown = t.backend().to_string();
        assert!(shown.contains(" FVU│"), "{shown}");
        insta::assert_snapshot!(format!("compare_{w}x{h}"), shown);
    }
}

#[test]
fn what_a_member_says_at_its_start_reaches_the_sweep_log() {
    let mut a = sweep_app();
    a.update(Msg::Job(JobEvent::Member(
        1,
        TrainEvent::Info("note: grid point 3 is member lambda=3e-3: it does not take sae.k".into()),
    )));
    assert!(
        a.log.iter().any(|l| l
            == "lambda=3e-3: note: grid point 3 is member lambda=3e-3: it does not take sae.k"),
        "{:?}",
        a.log
    );
    let screen = render(&a, 160, 48);
    assert!(screen.contains("grid point 3"), "{screen}");
}

#[test]
fn a_viewer_of_a_sweep_offers_only_the_keys_it_takes() {
    let a = sweep_app().watching();
    for w in [160, 80] {
        let screen = render(&a, w, 48);
        assert!(screen.contains("q leave"), "{w}: {screen}");
        assert!(
            !screen.contains("P/C/X") && !screen.contains("p c x"),
            "{w}: {screen}"
        );
    }
    let mut a = a;
    a.update(ch('?'));
    let help = render(&a, 160, 48);
    assert!(
        help.contains("leave the viewer (the sweep goes on)"),
        "{help}"
    );
    assert!(
        !help.contains("pause or resume") && !help.contains("stop the member"),
        "{help}"
    );
    // the sweep's own screen offers them
    let own = render(&sweep_app(), 160, 48);
    assert!(own.contains("P/C/X all") && own.contains("q quit"), "{own}");
}

#[test]
fn a_grids_varied_column_names_its_keys_once_and_never_cuts_a_value_silently() {
    let lr = |v: &str| -> Vec<(String, toml::Value)> {
        let t: toml::Table = format!("v = {v}").parse().unwrap();
        vec![
            ("train.sparsity_coefficient".to_string(), t["v"].clone()),
            ("train.lr".to_string(), toml::Value::Float(0.000123456789)),
            (
                "train.target_l0".to_string(),
                toml::Value::Float(123456789.123456),
            ),
        ]
    };
    let members: Vec<_> = ["0.03", "0.003"]
        .iter()
        .map(|v| {
            let app = TrainApp::new(config(&[]), format!("m{v}"), "cpu".into(), 0, 1000);
            (format!("m{v}"), lr(v), app)
        })
        .collect();
    let mut a = SweepApp::new("grid".into(), members);
    let screen = render(&a, 160, 48);
    assert!(screen.contains("lambda, lr, l0"), "{screen}");
    assert!(
        screen.contains("0.03, 0.000123456789, 1234567… "),
        "{screen}"
    );
    assert!(
        screen.contains("0.003, 0.000123456789, 123456… "),
        "{screen}"
    );
    assert!(!screen.contains("lambda=0.03"), "{screen}");
    // S sorts by the previous column, s by the next
    let start = a.sort.0;
    a.update(ch('S'));
    assert_ne!(a.sort.0, start);
    a.update(ch('s'));
    assert_eq!(a.sort.0, start);
}
