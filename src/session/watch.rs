//! `watch`: the screen of a run or a sweep that another process runs (under nohup), read back
//! from its logs as they grow (woken by `notify`, and at least twice a second in case file events
//! are lost, as on network file systems). Edits go to the members' `config.toml`, which that
//! process watches and applies; `q` leaves the viewer and the job goes on.

use super::follow::Follower;
use super::screen::watch_for_screen_files;
use super::signals;
use crate::live::{self, ConfigEdit, ConfigFile, WatchError};
use crate::schema::sweep::SweepTail;
use crate::sweep::spec::{self, SpecError};
use crate::train::control::{Control, JobControl, JobEvent};
use crate::tui::app::TrainApp;
use crate::tui::drive::{self, Screen, join_briefly, spawn_key_thread};
use crate::tui::msg::Msg;
use crate::tui::sweep::SweepApp;
use crate::tui::theme::Theme;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

/// A directory that cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Not a directory at all.
    #[error("{}: not a directory (expected a run directory written by `jumpscope train`)", .0.display())]
    NotADirectory(PathBuf),
    /// A directory without a run's files.
    #[error(
        "{} is not a run directory: no {missing} (expected the directory `jumpscope train` writes)",
        dir.display()
    )]
    NotARun {
        /// The directory.
        dir: PathBuf,
        /// The files it lacks.
        missing: String,
    },
    /// A run whose config.toml does not read.
    #[error("{} is not a usable run directory: {reason}", dir.display())]
    Unusable {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A sweep whose sweep.toml does not read.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// `watch` draws a screen: standard output must be a terminal.
    #[error("watch draws a screen and needs a terminal; for a log use `tail -f {}`", .0.display())]
    NoTerminal(PathBuf),
    /// A file cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The signal handler cannot be installed.
    #[error("cannot handle signals: {0}")]
    Signal(#[from] ctrlc::Error),
}

/// What `watch` follows: each member's run directory, and the sweep's log for a sweep.
struct Followed {
    screen: Box<dyn Screen>,
    members: Vec<PathBuf>,
    sweep_log: Option<PathBuf>,
}

/// The run in `dir`, checked.
fn run_in(dir: &Path) -> Result<Followed, FollowError> {
    if !dir.is_dir() {
        return Err(FollowError::NotADirectory(dir.to_path_buf()));
    }
    let missing: Vec<&str> = ["config.toml", "metrics.jsonl"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(FollowError::NotARun {
            dir: dir.to_path_buf(),
            missing: missing.join(" or "),
        });
    }
    let cfg = match live::read(ConfigFile::in_run(dir).path()) {
        ConfigEdit::Valid(c) => *c,
        ConfigEdit::Invalid(reason) => {
            return Err(FollowError::Unusable {
                dir: dir.to_path_buf(),
                reason,
            });
        }
    };
    let (device, total) = (cfg.device.label(), cfg.total_steps());
    let app = TrainApp::new(cfg, name_of(dir), device, 0, total).watching();
    Ok(Followed {
        screen: Box::new(app),
        members: vec![dir.to_path_buf()],
        sweep_log: None,
    })
}

/// The sweep in `dir` (it has a sweep.toml).
fn sweep_in(dir: &Path) -> Result<Followed, FollowError> {
    let spec = spec::load(&dir.join("sweep.toml"), &[], Some(dir))?;
    let mut rows = Vec::new();
    let mut members = Vec::new();
    for m in &spec.members {
        let run_dir = dir.join(&m.name);
        // the member's configuration in force, as its process last wrote it
        let cfg = match live::read(ConfigFile::in_run(&run_dir).path()) {
            ConfigEdit::Valid(c) => *c,
            ConfigEdit::Invalid(_) => m.config.clone(),
        };
        let (device, total) = (cfg.device.label(), cfg.total_steps());
        let app = TrainApp::new(cfg, m.name.clone(), device, 0, total);
        rows.push((m.name.clone(), m.overrides.clone(), app));
        members.push(run_dir);
    }
    Ok(Followed {
        screen: Box::new(SweepApp::new(name_of(dir), rows).watching()),
        members,
        sweep_log: Some(dir.join("sweep.jsonl")),
    })
}

fn name_of(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// Follow the run or sweep in `dir` on its screen until the user leaves.
pub fn watch(dir: &Path, theme: Theme) -> Result<(), FollowError> {
    let mut followed = if dir.join("sweep.toml").is_file() {
        sweep_in(dir)?
    } else {
        run_in(dir)?
    };
    if !std::io::stdout().is_terminal() {
        let log = followed
            .sweep_log
            .clone()
            .unwrap_or_else(|| dir.join("metrics.jsonl"));
        return Err(FollowError::NoTerminal(log));
    }
    let (tx, msgs) = channel::<Msg>();
    let signal_tx = tx.clone();
    // SIGTERM and SIGHUP close the viewer; the job is another process and goes on
    signals::on_signal(move || {
        let _ = signal_tx.send(Msg::Signal);
    })?;
    let files: Vec<ConfigFile> = followed
        .members
        .iter()
        .map(|d| ConfigFile::in_run(d))
        .collect();
    let watches = watch_for_screen_files(&files, &tx)?;
    let stop = Arc::new(AtomicBool::new(false));
    let follower = spawn_follower(&followed, tx.clone(), stop.clone())?;
    let input = spawn_key_thread(tx, stop.clone());
    let ui = drive::on_screen(
        None,
        &mut *followed.screen,
        &theme,
        &msgs,
        &mut |c, screen| send_through_file(c, screen, &files),
    );
    stop.store(true, Ordering::Relaxed);
    join_briefly(input);
    let _ = follower.join();
    drop(watches);
    if let Err(p) = ui {
        std::panic::resume_unwind(p);
    }
    Ok(())
}

/// A watched job's edit: the screen already holds the checked configuration; write it to the
/// member's `config.toml`, which the job's process applies and logs (that comes back through its
/// metrics.jsonl), and say so (or why not) in the member's log. Other controls need the job's
/// own process; the watching screens do not offer them.
fn send_through_file(c: JobControl, screen: &mut dyn Screen, files: &[ConfigFile]) {
    let Control::SetHyper(_) = c.control else {
        return;
    };
    let i = c.member.unwrap_or(0);
    let app = match screen.as_sweep() {
        Some(s) => s.rows.get_mut(i).map(|r| &mut r.app),
        None => screen.as_train(),
    };
    let (Some(app), Some(file)) = (app, files.get(i)) else {
        return;
    };
    match file.write(&app.config) {
        Ok(()) => app.notice("sent through config.toml", false),
        Err(e) => app.notice(
            format!("{}: cannot write: {e}", file.path().display()),
            true,
        ),
    }
}

/// A thread that reads what the members' metrics.jsonl (and a sweep's sweep.jsonl) gain, woken
/// by changes of the first log it follows and at least twice a second.
fn spawn_follower(
    followed: &Followed,
    tx: Sender<Msg>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, WatchError> {
    let wake_on = followed
        .sweep_log
        .clone()
        .unwrap_or_else(|| followed.members[0].join("metrics.jsonl"));
    let (watcher, wake) = live::watch_file(&wake_on)?;
    let mut followers: Vec<Follower> = followed
        .members
        .iter()
        .map(|m| Follower::new(&m.join("metrics.jsonl")))
        .collect();
    let mut sweep = followed.sweep_log.as_deref().map(SweepTail::new);
    let single = sweep.is_none();
    std::thread::Builder::new()
        .name("jumpscope-follow".into())
        .spawn(move || {
            let _watcher = watcher;
            while !stop.load(Ordering::Relaxed) {
                for (i, f) in followers.iter_mut().enumerate() {
                    let msgs = match f.poll() {
                        Ok((events, touched)) => {
                            let any = !events.is_empty();
                            let mut msgs: Vec<Msg> = events
                                .into_iter()
                                .map(|ev| Msg::Job(JobEvent::Member(i, ev)))
                                .collect();
                            // a single run's screen says how long ago its log was written
                            if let (true, true, Some(t)) = (single, any, touched) {
                                msgs.push(Msg::LogTouched(t));
                            }
                            msgs
                        }
                        // a sweep's member may not have started its log yet
                        Err(_) if !single => Vec::new(),
                        Err(e) => vec![Msg::train(crate::train::control::TrainEvent::Warning(
                            e.to_string(),
                        ))],
                    };
                    for m in msgs {
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                }
                if let Some(t) = sweep.as_mut() {
                    for rec in t.poll_records() {
                        if tx.send(Msg::Job(JobEvent::Sweep(rec))).is_err() {
                            return;
                        }
                    }
                }
                let _ = wake.recv_timeout(Duration::from_millis(500));
                // a burst of appends is read in one go
                while wake.try_recv().is_ok() {}
            }
        })
        .map_err(|source| WatchError::Thread {
            path: wake_on,
            source,
        })
}
