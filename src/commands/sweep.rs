//! `jumpscope sweep`: expand the sweep config (or resume a sweep), wire Ctrl-C/SIGTERM/SIGHUP
//! to a checkpointing stop of every member and each member's config.toml to its live edits,
//! and print one line per member report and the member table at the end.

use crate::cli::SweepArgs;
use jumpscope::live::{self, ConfigWatch, Verdict};
use jumpscope::schema::record::Record;
use jumpscope::schema::sweep::SweepRecord;
use jumpscope::sweep::run::{Sweep, SweepOutcome};
use jumpscope::train::control::{JobControl, JobEvent};
use jumpscope::sweep::spec;
use jumpscope::train::control::{Control, TrainEvent};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::mpsc;

/// What the table at the end shows of a member: its last report and held-out evaluation.
#[derive(Default, Clone)]
struct Last {
    step: u64,
    l0: f64,
    explained_variance: f64,
    dead: u64,
    heldout_fvu: Option<f64>,
}

/// Run the command; returns the process exit code.
pub fn run(args: SweepArgs) -> anyhow::Result<i32> {
    let theme = super::theme(&args.look)?;
    let screen = !args.headless && std::io::stdout().is_terminal();
    let mut sweep = match &args.resume {
        Some(dir) => Sweep::resume(dir)?,
        None => {
            let path = args
                .config
                .as_ref()
                .expect("clap requires --config or --resume");
            let spec = spec::load(path, &args.sets, args.out.as_deref())?;
            for line in &spec.merged {
                eprintln!("note: {line}");
            }
            Sweep::new(&spec)?
        }
    };
    if screen {
        return live(sweep, theme);
    }
    let (tx, rx) = mpsc::channel();
    let stop_tx = tx.clone();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(JobControl {
            member: None,
            control: Control::Stop,
        });
    })?;
    // each member's config.toml steers that member, as for a single run
    let mut watches = Vec::new();
    for (i, m) in sweep.members().iter().enumerate() {
        let Some(t) = &m.trainer else { continue };
        let in_force = std::sync::Mutex::new(t.config().clone());
        let edit_tx = tx.clone();
        let name = m.name.clone();
        watches.push(
            ConfigWatch::start(t.config_file(), move |e| {
                let Ok(mut cur) = in_force.lock() else { return };
                match live::judge_file(&cur, e) {
                    Verdict::Apply(new, edit) => {
                        *cur = *new;
                        let _ = edit_tx.send(JobControl {
                            member: Some(i),
                            control: Control::SetHyper(edit),
                        });
                    }
                    Verdict::Unchanged => {}
                    Verdict::Refused(reason) => eprintln!("warning: {name}: {reason}"),
                }
            })
            .map_err(anyhow::Error::msg)?,
        );
    }
    let names: Vec<String> = sweep.members().iter().map(|m| m.name.clone()).collect();
    eprintln!(
        "sweep of {} members -> {} ({})",
        names.len(),
        sweep.dir().display(),
        names.join(", ")
    );
    let mut last: BTreeMap<usize, Last> = BTreeMap::new();
    let mut epoch_said = false;
    let width = names.iter().map(String::len).max().unwrap_or(4);
    let mut sink = |ev: JobEvent| match ev {
        JobEvent::Member(i, TrainEvent::Record(Record::Metrics(m))) => {
            let l = last.entry(i).or_default();
            l.step = m.step;
            l.l0 = m.l0;
            l.explained_variance = m.explained_variance;
            l.dead = m.dead;
            eprintln!(
                "{:<width$}  step {:>6}  loss {:.5}  L0 {:.1}  EV {:.3}  dead {}  {:.0} tok/s",
                names[i], m.step, m.loss, m.l0, m.explained_variance, m.dead, m.tokens_per_s
            );
        }
        JobEvent::Member(i, TrainEvent::Record(Record::Eval { eval, .. })) => {
            last.entry(i).or_default().heldout_fvu = Some(eval.fvu);
        }
        // the stream's epochs are every member's: said once, for the first epoch
        JobEvent::Member(_, TrainEvent::Record(Record::Epoch { .. })) if epoch_said => {}
        JobEvent::Member(i, TrainEvent::Record(rec)) => {
            epoch_said |= matches!(rec, Record::Epoch { .. });
            // checkpoints are said once per sweep checkpoint, below
            if !matches!(rec, Record::Checkpoint { .. } | Record::Stop { .. })
                && let Some(line) = rec.summary()
            {
                eprintln!("{:<width$}  step {}: {line}", names[i], rec.step());
            }
        }
        JobEvent::Member(i, TrainEvent::Warning(w)) => {
            eprintln!("{:<width$}  warning: {w}", names[i])
        }
        JobEvent::Member(i, TrainEvent::Info(s)) => eprintln!("{:<width$}  {s}", names[i]),
        JobEvent::Sweep(rec) => {
            if let Some(line) = summary(&rec) {
                eprintln!("{line}");
            }
        }
    };
    let outcome = sweep.run(&rx, &mut sink);
    drop(watches);
    let outcome = outcome?;
    println!(
        "{:<width$}  {:>9}  {:>8}  {:>7}  {:>6}  {:>11}  {:>5}",
        "member", "state", "step", "L0", "EV", "heldout FVU", "dead"
    );
    for (i, m) in sweep.members().iter().enumerate() {
        let (step, l0, ev, dead) = match last.get(&i) {
            Some(l) if l.l0.is_finite() => (
                m.step.max(l.step).to_string(),
                format!("{:.2}", l.l0),
                format!("{:.3}", l.explained_variance),
                l.dead.to_string(),
            ),
            _ => (m.step.to_string(), "-".into(), "-".into(), "-".into()),
        };
        let fvu = last
            .get(&i)
            .and_then(|l| l.heldout_fvu)
            .map_or("-".into(), |f| format!("{f:.4}"));
        println!(
            "{:<width$}  {:>9}  {step:>8}  {l0:>7}  {ev:>6}  {fvu:>11}  {dead:>5}",
            m.name,
            m.state.name(),
        );
        if let Some(r) = &m.reason {
            println!("{:<width$}  failed: {r}", "");
        }
    }
    match outcome {
        SweepOutcome::Done => {
            eprintln!(
                "done: {} rows read once for {} members; each member's SAE in {}/<member>/sae",
                sweep.rows_read(),
                names.len(),
                sweep.dir().display()
            );
            Ok(0)
        }
        SweepOutcome::Stopped => {
            eprintln!(
                "stopped at step {}: every member checkpointed; continue with `jumpscope sweep --resume {}`",
                sweep.step(),
                sweep.dir().display()
            );
            Ok(130)
        }
    }
}

/// Run the sweep under its screen: the member table and the frontier, each member's training
/// screen a key away.
fn live(sweep: Sweep, theme: jumpscope::tui::theme::Theme) -> anyhow::Result<i32> {
    use jumpscope::tui::app::App;
    use jumpscope::tui::sweep::run::{control_channel, sweep_with_tui};
    use jumpscope::tui::sweep::{SweepApp, SweepMsg};
    let (tx, rx) = mpsc::channel();
    let signal_tx = tx.clone();
    // SIGTERM and SIGHUP (an SSH drop) stop every member with a checkpoint
    ctrlc::set_handler(move || {
        let _ = signal_tx.send(SweepMsg::Signal);
    })?;
    let name = sweep
        .dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| sweep.dir().display().to_string());
    let mut members = Vec::new();
    let mut watches = Vec::new();
    for (i, m) in sweep.members().iter().enumerate() {
        let varied = m
            .varied
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let device = m.config.device.label();
        let app = App::new(
            m.config.clone(),
            m.name.clone(),
            device,
            m.step,
            m.config.total_steps(),
        );
        members.push((m.name.clone(), varied, app));
        if let Some(t) = &m.trainer {
            let edits = tx.clone();
            watches.push(
                ConfigWatch::start(t.config_file(), move |e| {
                    let _ = edits.send(SweepMsg::ConfigFile(i, e));
                })
                .map_err(anyhow::Error::msg)?,
            );
        }
    }
    let mut app = SweepApp::new(name, members);
    for (i, m) in sweep.members().iter().enumerate() {
        app.set_state(i, m.state);
    }
    let (control_tx, controls) = control_channel();
    let (sweep, outcome) = sweep_with_tui(sweep, app, theme, tx, rx, control_tx, controls);
    drop(watches);
    let outcome = outcome?;
    let dir = sweep
        .as_ref()
        .map(|s| s.dir().display().to_string())
        .unwrap_or_default();
    match outcome {
        SweepOutcome::Done => {
            eprintln!("done: each member's SAE in {dir}/<member>/sae");
            Ok(0)
        }
        SweepOutcome::Stopped => {
            eprintln!(
                "stopped: every member checkpointed; continue with `jumpscope sweep --resume {dir}`"
            );
            Ok(130)
        }
    }
}

/// One line for a sweep record worth telling.
fn summary(rec: &SweepRecord) -> Option<String> {
    match rec {
        SweepRecord::Start {
            d_in,
            scale,
            devices,
            ..
        } => Some(format!(
            "started: d_in {d_in}, input scale C = {scale:.4}, devices {}",
            devices.join(", ")
        )),
        SweepRecord::Resume { step, members } => {
            Some(format!("resumed at step {step}: {}", members.join(", ")))
        }
        SweepRecord::Member {
            step,
            name,
            state,
            reason,
            member_step,
        } => Some(format!(
            "step {step}: {name} {} at its step {member_step}{}",
            state.name(),
            reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
        )),
        SweepRecord::Checkpoint { step, members, .. } => Some(format!(
            "step {step}: checkpoint of {} members",
            members.len()
        )),
        SweepRecord::Finish { .. } | SweepRecord::Stop { .. } => None,
    }
}
