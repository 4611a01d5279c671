//! The training screen without a terminal: `TrainApp::update` (events and keys in, state and
//! controls out) and `TestBackend` snapshots of the screens (insta, `tests/it/snapshots/`).

use crate::common::Cfg;
use jumpscope::config::{Config, parse};
use jumpscope::live::ConfigEdit;
use jumpscope::metrics::stats::Histogram;
use jumpscope::schema::record::{Change, MetricsRecord, Record};
use jumpscope::train::control::{Control, JobEvent, TrainEvent};
use jumpscope::tui::app::{Ending, Msg, Overlay, Pane, RunState, TrainApp};
use jumpscope::tui::theme::Theme;
use jumpscope::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::{Path, PathBuf};

fn config(extra: &[&str]) -> Config {
    Cfg::on(Path::new("acts.h5"))
        .out(Path::new("runs/demo"))
        .with(&[
            "data.batch_size=4096",
            "sae.d_sae=16384",
            "train.steps=1000",
            "train.sparsity_coefficient=0.001",
            "train.lr=0.0002",
        ])
        .with(extra)
        .build()
}

fn app(extra: &[&str]) -> TrainApp {
    TrainApp::new(config(extra), "demo".into(), "cpu".into(), 0, 1000)
}

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn rec(r: Record) -> Msg {
    Msg::train(TrainEvent::Record(r))
}

/// A deterministic metrics report for step `s`.
fn metrics(s: u64) -> Msg {
    let x = s as f64;
    let theta: Vec<f64> = (0..400).map(|i| -2.0 + (i % 37) as f64 * 0.05).collect();
    let firing: Vec<f64> = (0..400).map(|i| -6.0 + (i % 23) as f64 * 0.2).collect();
    rec(Record::Metrics(Box::new(MetricsRecord {
        step: s,
        tokens: s * 4096,
        loss: 1.0 / (1.0 + x / 50.0),
        mse_scaled: 0.8 / (1.0 + x / 40.0),
        mse_norm: 0.7 / (1.0 + x / 40.0),
        sparsity: 60.0 / (1.0 + x / 30.0),
        pre_act: 0.0,
        l0: 10.0 + 50.0 / (1.0 + x / 20.0),
        explained_variance: 1.0 - 0.8 / (1.0 + x / 40.0),
        dead: 100 + s / 10,
        dead_fraction: (100 + s / 10) as f64 / 16384.0,
        dead_window_tokens: 10_000_000,
        lr: 2e-4,
        sparsity_coefficient: 1e-3,
        tokens_per_s: 5000.0,
        skipped_rows: 0,
        epoch: 0,
        data_wait_fraction: 0.0,
        sparse_fraction: 0.0,
        firing_hist: Histogram::new(firing, -10.0, 0.0, 40),
        theta_hist: Histogram::new(theta, -3.0, 0.0, 40),
        global_threshold: None,
        matryoshka_fvu: Vec::new(),
        elapsed_s: x,
    })))
}

/// A held-out evaluation at step `s`, a little worse than training.
fn held_out(s: u64) -> Msg {
    let x = s as f64;
    let fvu = 0.9 / (1.0 + x / 40.0) + 0.01;
    rec(Record::Eval {
        step: s,
        tokens: s * 4096,
        eval: jumpscope::eval::Evaluation {
            n_tokens: 2048,
            l0: 11.0 + 50.0 / (1.0 + x / 20.0),
            mse_raw: fvu * 3.0,
            mse_norm: fvu * 0.8,
            fvu,
            explained_variance: 1.0 - fvu,
            silent: 900,
            silent_fraction: 900.0 / 16384.0,
        },
    })
}

fn started() -> Msg {
    started_as(jumpscope::config::Architecture::JumpRelu)
}

fn started_as(architecture: jumpscope::config::Architecture) -> Msg {
    rec(Record::Start {
        step: 0,
        tokens: 0,
        d_in: 512,
        d_sae: 16384,
        architecture,
        kind: Default::default(),
        d_out: None,
        scale: 1.5,
        device: "cpu".into(),
        store_attributes: Default::default(),
        memory_estimate: None,
        memory_available: None,
    })
}

/// A run 400 steps in, with a checkpoint, an epoch, a tweak and a warning in the log.
fn busy_app() -> TrainApp {
    let mut a = app(&[
        "train.sparsity_loss=\"l0_target\"",
        "train.target_l0=32",
        "data.eval_tokens=2048",
        "train.eval_every=100",
    ]);
    a.update(started());
    for s in (10..=400).step_by(10) {
        a.update(metrics(s));
        if s % 100 == 0 {
            a.update(held_out(s));
        }
    }
    a.update(rec(Record::Checkpoint {
        step: 400,
        tokens: 400 * 4096,
        path: PathBuf::from("runs/demo/checkpoints/step-400"),
    }));
    a.update(rec(Record::Epoch {
        step: 350,
        tokens: 350 * 4096,
        epoch: 1,
    }));
    let change = Change {
        old: 0.0002.into(),
        new: 0.00025.into(),
    };
    a.update(rec(Record::Hyper {
        step: 300,
        tokens: 300 * 4096,
        source: jumpscope::schema::record::EditSource::Key,
        changes: [("lr".to_string(), change)].into(),
    }));
    a.update(Msg::train(TrainEvent::Warning(
        "skipped 3 rows with NaN".into(),
    )));
    a.update(rec(Record::Warning {
        step: 390,
        tokens: 390 * 4096,
        kind: jumpscope::schema::health::Kind::DeadRising,
        message: "12.0 % of the features are dead, up from 8.0 % 4 reports ago".into(),
        hint: jumpscope::schema::health::Kind::DeadRising
            .hint(jumpscope::config::Architecture::JumpRelu),
        values: Default::default(),
    }));
    a
}

fn render(a: &TrainApp, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, a, &Theme::mono())).unwrap();
    t.backend().to_string()
}

#[test]
fn metrics_fill_the_charts_and_the_status() {
    let mut a = app(&[]);
    assert_eq!(a.state, RunState::WarmingUp);
    a.update(started());
    a.update(metrics(10));
    a.update(metrics(20));
    assert_eq!(a.state, RunState::Training);
    assert_eq!((a.step, a.tokens), (20, 20 * 4096));
    assert_eq!(a.l0.full().len(), 2);
    assert!(a.theta_hist.is_some() && a.firing_hist.is_some());
    // 980 steps left of 4096 tokens at 5000 tokens/s
    let eta = a.eta_s().unwrap();
    assert!((eta - 980.0 * 4096.0 / 5000.0).abs() < 1e-6, "{eta}");
}

#[test]
fn stepping_a_hyperparameter_sends_it_checked_and_records_it() {
    let mut a = app(&[]);
    a.update(metrics(10));
    // λ is selected first; → steps it up by 25 %
    let out = a.update(ch('l'));
    let [Control::SetHyper(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(e.source, jumpscope::schema::record::EditSource::Key);
    assert!((e.hyper.sparsity_coefficient - 0.00125).abs() < 1e-12);
    assert_eq!(a.config.hyper, e.hyper);
    // the one change travels with the edit
    assert_eq!(
        e.changes.keys().collect::<Vec<_>>(),
        ["sparsity_coefficient"]
    );
    assert_eq!(e.changes["sparsity_coefficient"].old, 0.001);
    // ↓ ↓ selects the learning rate; ← steps it down
    a.update(key(KeyCode::Down));
    a.update(ch('j'));
    let out = a.update(key(KeyCode::Left));
    let [Control::SetHyper(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!((e.hyper.lr - 0.0002 / 1.25).abs() < 1e-12, "{}", e.hyper.lr);
    // log_every doubles and halves, never below 1
    a.update(ch('j'));
    a.update(ch('j'));
    let out = a.update(ch('h'));
    let [Control::SetHyper(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(e.hyper.log_every, 50);
}

#[test]
fn a_typed_value_is_applied_or_refused_with_the_key_and_reason() {
    let mut a = app(&[]);
    a.update(metrics(10));
    a.update(key(KeyCode::Enter));
    assert_eq!(a.editing.as_deref(), Some("0.001"));
    for _ in 0..5 {
        a.update(key(KeyCode::Backspace));
    }
    for c in "0.5".chars() {
        a.update(ch(c));
    }
    let out = a.update(key(KeyCode::Enter));
    assert!(
        matches!(out.as_slice(), [Control::SetHyper(e)] if e.hyper.sparsity_coefficient == 0.5),
        "{out:?}"
    );
    assert!(a.editing.is_none());
    // a bad value: nothing sent, the reason in the log, the old value kept
    a.update(key(KeyCode::Enter));
    a.update(key(KeyCode::Backspace));
    a.update(key(KeyCode::Backspace));
    a.update(key(KeyCode::Backspace));
    a.update(ch('-'));
    a.update(ch('2'));
    let out = a.update(key(KeyCode::Enter));
    assert!(out.is_empty(), "{out:?}");
    let last = &a.log.back().unwrap();
    assert!(last.alarm, "{last:?}");
    assert!(
        last.text.contains("train.sparsity_coefficient") && last.text.contains(">= 0"),
        "{}",
        last.text
    );
    assert_eq!(a.config.hyper.sparsity_coefficient, 0.5);
    // Esc cancels an edit
    a.update(key(KeyCode::Enter));
    a.update(ch('9'));
    assert!(a.update(key(KeyCode::Esc)).is_empty());
    assert!(a.editing.is_none());
    // target L0 is unset without the l0_target penalty: stepping it is refused
    a.update(ch('j'));
    assert!(a.update(ch('l')).is_empty());
    assert!(a.log.back().unwrap().text.contains("not set"));
}

#[test]
fn quitting_asks_first_and_stops_with_a_checkpoint() {
    let mut a = app(&[]);
    a.update(metrics(10));
    assert!(a.update(ch('q')).is_empty());
    assert_eq!(a.overlay, Some(Overlay::ConfirmQuit));
    // c means "checkpoint" everywhere else: it is no answer here
    assert!(a.update(ch('c')).is_empty());
    assert_eq!(a.overlay, Some(Overlay::ConfirmQuit), "c does not answer");
    assert!(a.update(ch('n')).is_empty(), "n keeps training");
    assert_eq!(a.overlay, None);
    assert!(!a.quit);
    a.update(ch('q'));
    assert!(a.update(key(KeyCode::Esc)).is_empty(), "Esc keeps training");
    assert_eq!(a.overlay, None);
    a.update(ch('q'));
    let out = a.update(ch('y'));
    assert!(matches!(out.as_slice(), [Control::Stop]), "{out:?}");
    assert_eq!(a.state, RunState::Stopping);
    assert!(!a.quit, "waits for the checkpoint");
    a.update(Msg::Finished(Ending::Done));
    assert!(a.quit);
}

#[test]
fn ctrl_c_and_signals_stop_at_once_and_a_finished_run_quits_on_q() {
    let mut a = app(&[]);
    let out = a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(matches!(out.as_slice(), [Control::Stop]), "{out:?}");
    let mut b = app(&[]);
    assert!(matches!(b.update(Msg::Signal).as_slice(), [Control::Stop]));
    let mut c = app(&[]);
    c.update(Msg::Finished(Ending::Done));
    assert_eq!(c.state, RunState::Done);
    assert!(!c.quit, "the finished screen stays up");
    assert!(c.update(ch('q')).is_empty());
    assert!(c.quit);
}

#[test]
fn pause_resume_and_checkpoint_now() {
    let mut a = app(&[]);
    a.update(metrics(10));
    assert!(matches!(a.update(ch('p')).as_slice(), [Control::Pause]));
    a.update(rec(Record::Pause {
        step: 10,
        tokens: 0,
    }));
    assert_eq!(a.state, RunState::Paused);
    assert!(matches!(a.update(ch('p')).as_slice(), [Control::Resume]));
    a.update(rec(Record::ResumeSteps {
        step: 10,
        tokens: 0,
    }));
    assert_eq!(a.state, RunState::Training);
    assert!(matches!(
        a.update(ch('c')).as_slice(),
        [Control::Checkpoint]
    ));
    assert_eq!(a.state, RunState::Checkpointing);
    a.update(rec(Record::Checkpoint {
        step: 10,
        tokens: 0,
        path: "c/step-10".into(),
    }));
    assert_eq!(a.state, RunState::Training);
    assert_eq!(a.last_checkpoint.as_ref().unwrap().0, 10);
}

#[test]
fn panes_cycle_and_the_time_axis_zooms() {
    let mut a = busy_app();
    assert_eq!(a.focus, Pane::Hyper);
    a.update(key(KeyCode::Tab));
    assert_eq!(a.focus, Pane::Log);
    a.update(key(KeyCode::Tab));
    assert_eq!(a.focus, Pane::Status);
    a.update(key(KeyCode::BackTab));
    assert_eq!(a.focus, Pane::Log);
    assert_eq!(a.window, None);
    a.update(ch('+'));
    assert_eq!(a.window, Some(200));
    // reports come every 100 steps: the window stops at two of them
    a.update(ch('+'));
    assert_eq!(a.window, Some(200));
    a.update(ch('-'));
    assert_eq!(
        a.window, None,
        "zooming out past the run shows the whole run"
    );
    a.update(ch('w'));
    assert_eq!(
        a.window,
        Some(200),
        "the recent window holds two reports at least"
    );
    a.update(ch('w'));
    assert_eq!(a.window, None);
}

#[test]
fn main_screen_at_120x40() {
    insta::assert_snapshot!(render(&busy_app(), 120, 40));
}

#[test]
fn main_screen_at_80x24() {
    let screen = render(&busy_app(), 80, 24);
    // the held-out numbers are there at the smallest size, beside training's, in one unit
    assert!(
        screen.contains("held-out L0 13.4  FVU 0.092  nMSE 0.0735  @ step 400"),
        "{screen}"
    );
    assert!(
        screen
            .contains("train    L0 12.4  FVU 0.073  nMSE 0.0636  dead 140 (0.9%) over 10.00M tok"),
        "{screen}"
    );
    assert!(screen.contains("FVU train · held-out"), "{screen}");
    // every axis is named
    for name in [
        "step",
        "L0",
        "FVU",
        "log10 θ",
        "log10 freq",
        "feat",
        "θ per feature, raw",
    ] {
        assert!(screen.contains(name), "{name}:\n{screen}");
    }
    insta::assert_snapshot!(screen);
}

#[test]
fn main_screen_at_160x48() {
    let screen = render(&busy_app(), 160, 48);
    // tall enough: FVU and nMSE stacked, the dead count over steps above the histogram
    assert!(screen.contains("nMSE 0.0636 normalised"), "{screen}");
    assert!(
        screen.contains("features by firing freq over 409.6k tok"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn tick_labels_differ_and_never_say_minus_zero() {
    use jumpscope::tui::widgets::ticks;
    assert_eq!(ticks(-0.21, -0.19), ["-0.210", "-0.190"]);
    assert_eq!(ticks(-0.0001, 0.2), ["0.00", "0.20"]);
    assert_eq!(ticks(0.9271, 0.9274), ["0.92710", "0.92740"]);
    assert_eq!(ticks(10.0, 400.0), ["10", "400"]);
    assert_eq!(ticks(12.38, 43.3), ["12.4", "43.3"]);
    let [a, b] = ticks(1.0, 1.0 + 1e-9);
    assert_ne!(a, b);
}

#[test]
fn the_loss_charts_take_turns_at_80x24_and_zoom_keeps_the_charts_on_one_range() {
    let mut a = busy_app();
    let fvu = render(&a, 80, 24);
    assert!(
        fvu.contains("FVU train") && !fvu.contains("nMSE 0.0636 n"),
        "{fvu}"
    );
    a.update(ch('m'));
    let mse = render(&a, 80, 24);
    assert!(
        mse.contains("┐┌ norm. MSE 0.0636 ") && !mse.contains("FVU train"),
        "{mse}"
    );
    a.update(ch('m'));
    assert_eq!(
        a.loss_view,
        jumpscope::tui::app::LossView::Fvu,
        "no ΔLM chart without a model"
    );
    // zoomed to the last 200 steps: both step charts start at 200
    a.update(ch('+'));
    let zoomed = render(&a, 160, 48);
    let starts = zoomed
        .lines()
        .filter(|l| l.contains("200") && l.contains("step") && l.contains("400"))
        .count();
    assert!(starts >= 3, "every step chart shows 200 … 400:\n{zoomed}");
}

#[test]
fn a_resume_rewinds_the_charts_and_the_events_never_go_backwards() {
    let mut a = busy_app();
    let steps_before: Vec<u64> = a.log.iter().map(|l| l.step).collect();
    assert!(
        steps_before.windows(2).all(|w| w[0] <= w[1]),
        "{steps_before:?}"
    );
    // the trainer crashed after step 400 and resumes from the checkpoint at 300
    a.update(rec(Record::Resume {
        step: 300,
        tokens: 300 * 4096,
        checkpoint: "runs/demo/checkpoints/step-300".into(),
        architecture: jumpscope::config::Architecture::JumpRelu,
        kind: Default::default(),
        d_out: None,
        d_in: 512,
        d_sae: 16384,
        scale: 1.5,
        device: "cpu".into(),
        memory_estimate: None,
        memory_available: None,
    }));
    assert_eq!((a.step, a.tokens), (300, 300 * 4096));
    assert!(a.l0.full().iter().all(|p| p.0 <= 300.0));
    assert_eq!(a.held_out().map(|h| h.0), Some(300));
    a.update(metrics(310));
    let steps: Vec<u64> = a.log.iter().map(|l| l.step).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    let text: Vec<&str> = a.log.iter().map(|l| l.text.as_str()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("after step 300 are of steps trained again")),
        "{text:?}"
    );
    // a record about an earlier step, arriving late, is listed now and says its step
    a.update(rec(Record::Checkpoint {
        step: 200,
        tokens: 200 * 4096,
        path: "runs/demo/checkpoints/step-200".into(),
    }));
    let last = a.log.back().unwrap();
    assert_eq!(last.step, 300);
    assert!(last.text.ends_with("(of step 200)"), "{}", last.text);
}

#[test]
fn the_status_line_takes_step_and_tokens_from_one_record() {
    let mut a = busy_app();
    a.update(rec(Record::Epoch {
        step: 405,
        tokens: 405 * 4096,
        epoch: 2,
    }));
    assert_eq!((a.step, a.tokens), (405, 405 * 4096));
    a.update(rec(Record::Pause {
        step: 405,
        tokens: 405 * 4096,
    }));
    let screen = render(&a, 120, 40);
    assert!(
        screen.contains("tok/s -"),
        "no throughput while paused:\n{screen}"
    );
}

/// A run of another architecture 200 steps in (BatchTopK reports its global threshold).
fn baseline_app(arch: &str) -> TrainApp {
    let extra: Vec<String> = match arch {
        "relu" => vec!["sae.architecture=\"relu\"".into()],
        _ => vec![format!("sae.architecture=\"{arch}\""), "sae.k=32".into()],
    };
    let mut sets: Vec<String> = vec![
        "data.stores=[\"acts.h5\"]".into(),
        "data.batch_size=4096".into(),
        "sae.d_sae=16384".into(),
        "train.steps=1000".into(),
        "train.lr=0.0002".into(),
        "run.out=\"runs/demo\"".into(),
    ];
    sets.extend(extra);
    let cfg = parse("", "test", &sets).unwrap().validate("test").unwrap();
    let architecture = cfg.sae.architecture;
    let mut a = TrainApp::new(cfg, "demo".into(), "cpu".into(), 0, 1000);
    a.update(started_as(architecture));
    for s in (10..=200).step_by(10) {
        let Msg::Job(JobEvent::Member(_, TrainEvent::Record(Record::Metrics(mut m)))) = metrics(s)
        else {
            unreachable!()
        };
        if arch == "batchtopk" {
            m.global_threshold = Some(0.5 + 0.2 / (1.0 + s as f64 / 50.0));
        }
        a.update(rec(Record::Metrics(m)));
    }
    a
}

#[test]
fn the_theta_pane_status_and_keys_follow_the_architecture() {
    for (arch, title, tunable) in [
        ("topk", "k-th pre-act., raw", "k (kept per token)"),
        ("batchtopk", "global threshold θ, raw units", "AuxK coef. α"),
        ("relu", "mean act., raw", "λ (sparsity coef.)"),
    ] {
        let a = baseline_app(arch);
        let screen = render(&a, 120, 40);
        assert!(screen.contains(title), "{arch}:\n{screen}");
        assert!(
            screen.contains(&format!("demo · {arch}")),
            "{arch}:\n{screen}"
        );
        assert!(screen.contains(tunable), "{arch}:\n{screen}");
        assert!(!screen.contains("bandwidth"), "{arch}:\n{screen}");
    }
    insta::assert_snapshot!(
        "topk_screen_at_120x40",
        render(&baseline_app("topk"), 120, 40)
    );
    insta::assert_snapshot!(
        "batchtopk_screen_at_120x40",
        render(&baseline_app("batchtopk"), 120, 40)
    );
}

#[test]
fn help_overlay() {
    let mut a = busy_app();
    a.update(ch('?'));
    insta::assert_snapshot!(render(&a, 120, 40));
}

#[test]
fn terminal_too_small() {
    insta::assert_snapshot!(render(&busy_app(), 60, 20));
}

#[test]
fn quit_confirmation_and_an_edit_in_progress() {
    let mut a = busy_app();
    a.update(key(KeyCode::Enter));
    a.update(ch('7'));
    let editing = render(&a, 120, 40);
    assert!(editing.contains("0.0017▏"), "{editing}");
    a.update(key(KeyCode::Esc));
    a.update(ch('q'));
    let confirm = render(&a, 120, 40);
    assert!(confirm.contains("stop with a checkpoint"), "{confirm}");
}

#[test]
fn config_file_edits_apply_live_keys_and_refuse_the_rest() {
    let mut a = app(&[]);
    a.update(metrics(10));
    let edited = a.config.with_edit("train.lr", "0.001", "file").unwrap();
    let out = a.update(Msg::ConfigFile(0, ConfigEdit::Valid(Box::new(edited))));
    assert!(
        matches!(out.as_slice(), [Control::SetHyper(e)] if e.hyper.lr == 0.001 && e.source == jumpscope::schema::record::EditSource::File),
        "{out:?}"
    );
    let shape = a.config.with_edit("sae.d_sae", "99", "file").unwrap();
    assert!(
        a.update(Msg::ConfigFile(0, ConfigEdit::Valid(Box::new(shape))))
            .is_empty()
    );
    let l = a.log.back().unwrap();
    assert!(
        l.alarm && l.text.contains("`sae.d_sae` cannot change"),
        "{l:?}"
    );
    assert_eq!(a.config.sae.d_sae, Some(16384), "old values stay");
    let bad = ConfigEdit::Invalid("config.toml: unknown key `train.lrr`".into());
    assert!(a.update(Msg::ConfigFile(0, bad)).is_empty());
    assert!(a.log.back().unwrap().text.contains("train.lrr"));
    // the same values again: nothing to send
    let same = a.config.clone();
    assert!(
        a.update(Msg::ConfigFile(0, ConfigEdit::Valid(Box::new(same))))
            .is_empty()
    );
}

#[test]
fn a_watcher_leaves_without_stopping_the_run_and_cannot_pause_it() {
    let mut a = app(&[]).watching();
    a.update(started());
    a.update(metrics(10));
    // pause and checkpoint belong to the training process: a note, no control
    for c in ['p', 'c'] {
        assert!(a.update(ch(c)).is_empty());
        assert_eq!(a.state, RunState::Training);
    }
    assert!(a.log.back().unwrap().alarm, "{:?}", a.log.back());
    // a tweak is still produced (the watch loop writes it to config.toml)
    let out = a.update(ch('l'));
    assert!(matches!(out.as_slice(), [Control::SetHyper(..)]), "{out:?}");
    // q leaves at once, without asking and without stopping the run
    assert!(a.update(ch('q')).is_empty());
    assert!(a.quit && a.overlay.is_none());
    let mut b = app(&[]).watching();
    b.update(metrics(10));
    assert!(
        b.update(Msg::Signal).is_empty() && b.quit,
        "SIGHUP closes a viewer"
    );
}

#[test]
fn a_watcher_adopts_config_file_saves_without_sending_them() {
    let mut a = app(&[]).watching();
    a.update(metrics(10));
    let edited = config(&["train.lr=0.0005"]);
    // the training process applies the file itself; the watcher only shows the new values
    assert!(
        a.update(Msg::ConfigFile(0, ConfigEdit::Valid(Box::new(edited))))
            .is_empty()
    );
    assert_eq!(a.config.hyper.lr, 0.0005);
    let structural = config(&["sae.d_sae=32768"]);
    assert!(
        a.update(Msg::ConfigFile(0, ConfigEdit::Valid(Box::new(structural))))
            .is_empty()
    );
    assert_eq!(a.config.sae.d_sae, Some(16384));
    assert!(a.log.back().unwrap().text.contains("d_sae"));
}

#[test]
fn a_resumed_run_comes_alive_again_and_only_the_first_epoch_gets_a_log_line() {
    let mut a = app(&[]).watching();
    a.update(metrics(10));
    a.update(rec(Record::Stop {
        step: 10,
        tokens: 10 * 4096,
        checkpoint: "run/checkpoints/step-10".into(),
    }));
    assert_eq!(a.state, RunState::Done);
    assert!(a.log.back().unwrap().text.contains("stopped at step 10"));
    a.update(started());
    assert_eq!(a.state, RunState::WarmingUp);
    for e in 1..=5 {
        a.update(rec(Record::Epoch {
            step: e * 32,
            tokens: e * 32 * 4096,
            epoch: e,
        }));
    }
    let epochs: Vec<_> = a.log.iter().filter(|l| l.text.contains("epoch")).collect();
    assert_eq!(epochs.len(), 1, "{epochs:?}");
    assert!(epochs[0].text.contains("epoch 1 begins"), "{epochs:?}");
    assert_eq!(a.epoch, 5, "the status pane counts them");
    assert!(render(&a, 120, 40).contains("epoch 5"));
}

#[test]
fn the_watch_screen_shows_only_what_a_watcher_can_do() {
    let mut a = busy_app().watching();
    let main = render(&a, 120, 40);
    assert!(main.contains("last record"), "{main}");
    let footer = main.lines().last().unwrap();
    assert!(footer.contains("quit"), "{footer}");
    assert!(
        !footer.contains("pause") && !footer.contains("checkpoint"),
        "{footer}"
    );
    let trained = render(&busy_app(), 120, 40);
    assert!(trained.lines().last().unwrap().contains("checkpoint"));
    a.update(ch('?'));
    let help = render(&a, 120, 40);
    assert!(
        help.contains("leave the viewer (the run goes on)"),
        "{help}"
    );
    assert!(!help.contains("pause / resume"), "{help}");
}

#[test]
fn metrics_jsonl_is_followed_as_it_grows() {
    use jumpscope::session::follow::Follower;
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("metrics.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let Msg::Job(JobEvent::Member(_, TrainEvent::Record(r @ Record::Metrics(_)))) = metrics(50)
    else {
        unreachable!()
    };
    let line = serde_json::to_string(&r).unwrap();
    let Record::Metrics(m) = r else {
        unreachable!()
    };
    writeln!(
        f,
        r#"{{"type":"start","step":0,"tokens":0,"d_in":512,"d_sae":16384,"scale":1.5,"device":"cpu"}}"#
    )
    .unwrap();
    // the metrics line arrives in two writes
    let (head, tail) = line.split_at(line.len() / 2);
    f.write_all(head.as_bytes()).unwrap();
    f.flush().unwrap();
    let mut fol = Follower::new(&path);
    let mut a = app(&[]).watching();
    let (msgs, touched) = fol.poll().unwrap();
    assert!(touched.is_some());
    assert_eq!(msgs.len(), 1, "only the complete line: {msgs:?}");
    for ev in msgs {
        a.update(Msg::train(ev));
    }
    assert_eq!((a.d_sae, a.total_steps), (16384, 1000));
    writeln!(f, "{tail}").unwrap();
    writeln!(
        f,
        r#"{{"type":"hyper","step":60,"tokens":0,"source":"file","changes":{{"lr":{{"old":0.0002,"new":0.0004}}}}}}"#
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"type":"checkpoint","step":64,"tokens":0,"path":"run/checkpoints/step-64"}}"#
    )
    .unwrap();
    writeln!(f, "not json").unwrap();
    writeln!(
        f,
        r#"{{"type":"stop","step":64,"tokens":0,"checkpoint":"x"}}"#
    )
    .unwrap();
    let (msgs, _) = fol.poll().unwrap();
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    for ev in msgs {
        a.update(Msg::train(ev));
    }
    assert_eq!(a.step, 50);
    assert_eq!(a.l0.full().len(), 1);
    assert_eq!(a.l0.last(), Some(m.l0));
    assert_eq!(a.last_checkpoint.as_ref().map(|c| c.0), Some(64));
    let log: Vec<&str> = a.log.iter().map(|l| l.text.as_str()).collect();
    assert!(
        log.iter()
            .any(|l| l.contains("[file] lr: 0.0002 -> 0.0004")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("unreadable line")), "{log:?}");
    assert_eq!(a.state, RunState::Done);
    assert!(fol.poll().unwrap().0.is_empty(), "nothing new");
}

#[test]
fn the_health_badge_counts_active_warnings() {
    let mut a = app(&[]);
    a.update(started());
    a.update(metrics(10));
    assert!(render(&a, 120, 40).contains("health ok  checkpoint"));
    for kind in [
        jumpscope::schema::health::Kind::LossSpike,
        jumpscope::schema::health::Kind::DataBound,
    ] {
        a.update(rec(Record::Warning {
            step: 10,
            tokens: 10 * 4096,
            kind,
            message: "m".into(),
            hint: kind.hint(jumpscope::config::Architecture::JumpRelu),
            values: Default::default(),
        }));
    }
    let screen = render(&a, 120, 40);
    assert!(screen.contains("health 2 (W)  checkpoint"), "{screen}");
    assert!(
        screen.contains("10 warning loss-spike: m; lower the"),
        "{screen}"
    );
    a.update(rec(Record::WarningCleared {
        step: 20,
        tokens: 20 * 4096,
        kind: jumpscope::schema::health::Kind::LossSpike,
    }));
    assert!(render(&a, 120, 40).contains("health 1 (W)  checkpoint"));
    a.update(rec(Record::WarningCleared {
        step: 30,
        tokens: 30 * 4096,
        kind: jumpscope::schema::health::Kind::DataBound,
    }));
    let screen = render(&a, 120, 40);
    assert!(screen.contains("health ok  checkpoint"), "{screen}");
    assert!(screen.contains("cleared data-bound"), "{screen}");
    // a warning still active when the run is resumed by a new process is dropped: that process
    // checks afresh
    a.update(rec(Record::Warning {
        step: 40,
        tokens: 40 * 4096,
        kind: jumpscope::schema::health::Kind::LossSpike,
        message: "m".into(),
        hint: "h".into(),
        values: Default::default(),
    }));
    assert!(render(&a, 120, 40).contains("health 1 (W)  checkpoint"));
    a.update(rec(Record::Resume {
        step: 40,
        tokens: 40 * 4096,
        checkpoint: PathBuf::from("runs/demo/checkpoints/step-40"),
        d_in: 512,
        d_sae: 16384,
        architecture: jumpscope::config::Architecture::JumpRelu,
        kind: Default::default(),
        d_out: None,
        scale: 1.5,
        device: "cpu".into(),
        memory_estimate: None,
        memory_available: None,
    }));
    assert!(render(&a, 120, 40).contains("health ok  checkpoint"));
}

#[test]
fn w_lists_the_active_warnings_and_the_charts_are_marked() {
    let mut a = busy_app();
    // busy_app has a dead-rising warning: the dead chart's title names it
    let screen = render(&a, 120, 40);
    assert!(screen.contains("! dead-rising"), "{screen}");
    assert!(!screen.contains("! l0-collapse"), "{screen}");
    a.update(key(KeyCode::Char('W')));
    assert_eq!(a.overlay, Some(Overlay::Warnings));
    let screen = render(&a, 120, 40);
    assert!(screen.contains("health warnings (Esc closes)"), "{screen}");
    assert!(
        screen.contains("dead-rising (step 390) 12.0 % of the features are dead"),
        "{screen}"
    );
    assert!(
        screen.contains("→ enable train.pre_act_coefficient"),
        "{screen}"
    );
    a.update(key(KeyCode::Esc));
    assert_eq!(a.overlay, None);
    a.update(rec(Record::WarningCleared {
        step: 400,
        tokens: 400 * 4096,
        kind: jumpscope::schema::health::Kind::DeadRising,
    }));
    assert!(!render(&a, 120, 40).contains("! dead-rising"));
    a.update(key(KeyCode::Char('W')));
    assert!(render(&a, 120, 40).contains("no active warnings"));
}

/// With the model in the loop: the MSE pane shares its space with ΔLM loss and CE recovered by
/// step, titled with the newest evaluation; a skipped and a failed evaluation are in the log,
/// the failure as an alarm.
#[test]
fn the_model_in_the_loop_is_charted_under_the_loss() {
    let mut a = app(&[
        "lm_eval.model=\"sample_data/tinylm\"",
        "lm_eval.layer=0",
        "lm_eval.site=\"resid_post\"",
        "lm_eval.token_ids=\"ids.npy\"",
        "lm_eval.every=100",
    ]);
    a.update(started());
    for s in (10..=400).step_by(10) {
        a.update(metrics(s));
    }
    for (step, d) in [(100u64, 0.9), (200, 0.5), (300, 0.35), (400, 0.3)] {
        a.update(rec(Record::LmEval(Box::new(
            jumpscope::schema::record::LmEvalRecord {
                step,
                tokens: step * 4096,
                scores: jumpscope::lmeval::LmScores {
                    ce_clean: 2.0,
                    ce_spliced: 2.0 + d,
                    ce_ablated: 6.0,
                    delta_lm_loss: d,
                    ce_recovered: (4.0 - d) / 4.0,
                    kl: d * 0.9,
                    l0: 40.0,
                    fvu: 0.05,
                },
                eval_tokens: 4096,
                model: "sample_data/tinylm".into(),
                layer: 0,
                site: "resid_post".into(),
                target_site: None,
            },
        ))));
    }
    a.update(rec(Record::LmEvalSkipped {
        step: 350,
        tokens: 350 * 4096,
        running: 300,
    }));
    a.update(rec(Record::LmEvalFailed {
        step: 400,
        tokens: 400 * 4096,
        message: "the model companion failed: it exited".into(),
    }));
    assert_eq!(a.delta_lm.last(), Some(0.3));
    let shown = render(&a, 120, 40);
    assert!(shown.contains("ΔLM +0.3000 nats"), "{shown}");
    assert!(
        render(&a, 160, 48).contains("ΔLM +0.3000 nats · CE rec. 0.925 · KL 0.2700 @ 400"),
        "the whole title where it fits"
    );
    insta::assert_snapshot!(shown);
}

#[test]
fn the_events_pane_scrolls_and_shows_an_event_whole_and_the_arrows_step_nothing_there() {
    let mut a = busy_app();
    let long = format!("a long event {} ends here", "x".repeat(150));
    a.update(Msg::train(TrainEvent::Info(long.clone())));
    for i in 0..30 {
        a.update(Msg::train(TrainEvent::Info(format!("note {i}"))));
    }
    let before = a.config.hyper.clone();
    // Tab to the events pane (the last one)
    while a.focus != jumpscope::tui::app::Pane::Log {
        a.update(key(KeyCode::Tab));
    }
    assert!(a.update(key(KeyCode::Right)).is_empty());
    assert!(a.update(key(KeyCode::Left)).is_empty());
    assert_eq!(a.config.hyper, before, "nothing stepped");
    let newest = render(&a, 80, 24);
    assert!(
        newest.contains("note 29") && !newest.contains("a long event"),
        "{newest}"
    );
    // PgUp, then ↑ to the long event: it is shown cut, with an ellipsis
    let at = a.log.iter().position(|l| l.text == long).unwrap();
    a.update(key(KeyCode::PageUp));
    a.update(key(KeyCode::PageUp));
    a.update(key(KeyCode::PageUp));
    while a.log_cursor.unwrap() > at {
        a.update(key(KeyCode::Up));
    }
    let scrolled = render(&a, 80, 24);
    assert!(
        scrolled.contains("a long event xxx") && scrolled.contains("…"),
        "{scrolled}"
    );
    assert!(!scrolled.contains("note 29"), "{scrolled}");
    // Enter shows it whole; Esc closes, as help closes
    a.update(key(KeyCode::Enter));
    let whole = render(&a, 80, 24);
    assert!(whole.contains("ends here"), "{whole}");
    a.update(key(KeyCode::Esc));
    assert_eq!(a.overlay, None);
    // End follows the newest again
    a.update(key(KeyCode::End));
    assert_eq!(a.log_cursor, None);
    insta::assert_snapshot!("events_scrolled_80x24", scrolled);
    // elsewhere they do
    a.update(key(KeyCode::Tab));
    assert!(!a.update(key(KeyCode::Right)).is_empty());
}
