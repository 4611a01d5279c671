//! The companion kept beside a training job: one thread owns it, takes evaluation requests from
//! each member's [`LmPort`] in turn, and sends each member its own outcomes, so that the trainer
//! never waits for the model (except for its final evaluation, which it asks to wait for).

use super::{Companion, LmEvalError, LmScores, LmTarget};
use crate::sae::model::HostParams;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// What became of one requested evaluation (or of the companion).
#[derive(Debug, Clone, PartialEq)]
pub enum LmOutcome {
    /// The SAE of step `step` was evaluated.
    Scores {
        /// The step whose parameters were evaluated.
        step: u64,
        /// The scores.
        scores: LmScores,
        /// Positions evaluated.
        eval_tokens: u64,
        /// Seconds the spliced pass took.
        secs: f64,
    },
    /// The companion could not evaluate: it failed to start or load, or it died. Later
    /// requests are refused with the same message.
    Failed {
        /// The step whose evaluation failed (none when the companion failed on its own).
        step: Option<u64>,
        /// The one-line reason.
        message: String,
    },
}

enum Request {
    Eval {
        member: usize,
        step: u64,
        params: Box<HostParams>,
    },
    Quit,
}

/// The thread that owns the companion. Dropping it ends the companion: asked to quit, and
/// killed if it has not within [`QUIT_GRACE`] (it may be loading a model or in a long pass).
pub struct LmWorker {
    tx: Sender<Request>,
    thread: Option<JoinHandle<()>>,
    /// The companion's process id once started (0 before).
    pid: Arc<AtomicI32>,
    /// Closed when the thread ends.
    ended: Receiver<()>,
}

/// How long a companion asked to quit may take before it is killed.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);

/// One member's way to the worker: at most one evaluation of its own in flight.
pub struct LmPort {
    member: usize,
    tx: Sender<Request>,
    rx: Receiver<LmOutcome>,
    in_flight: Option<u64>,
    failed: bool,
    /// The worker, when this port's owner is the job's only member.
    _worker: Option<LmWorker>,
}

/// What [`LmPort::submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The evaluation is queued.
    Sent,
    /// The member's previous evaluation (of this step) is still running: nothing was sent.
    Busy(u64),
    /// The companion has failed: nothing was sent.
    Failed,
}

impl LmWorker {
    /// Start the companion with `python` on `target` in a thread (its stderr into `log`), with a
    /// port for each of `members` members. The model loads while the job trains.
    pub fn start(
        python: PathBuf,
        target: LmTarget,
        log: PathBuf,
        members: usize,
    ) -> (LmWorker, Vec<LmPort>) {
        let (tx, rx) = channel();
        let (outs, ins): (Vec<_>, Vec<_>) = (0..members).map(|_| channel()).unzip();
        let pid = Arc::new(AtomicI32::new(0));
        let (ended_tx, ended) = channel::<()>();
        let shared_pid = pid.clone();
        let thread = std::thread::Builder::new()
            .name("lm-eval".into())
            .spawn(move || {
                serve(&python, &target, &log, &rx, &outs, &shared_pid);
                drop(ended_tx);
            })
            .ok();
        let ports = ins
            .into_iter()
            .enumerate()
            .map(|(member, rx)| LmPort {
                member,
                tx: tx.clone(),
                rx,
                in_flight: None,
                failed: false,
                _worker: None,
            })
            .collect();
        (
            LmWorker {
                tx,
                thread,
                pid,
                ended,
            },
            ports,
        )
    }
}

impl Drop for LmWorker {
    fn drop(&mut self) {
        let _ = self.tx.send(Request::Quit);
        let mut wait = QUIT_GRACE;
        // until the thread ends: past the grace period, kill the companion once it has a pid
        // (it may still be starting)
        while let Err(RecvTimeoutError::Timeout) = self.ended.recv_timeout(wait) {
            wait = Duration::from_millis(100);
            let pid = self.pid.swap(0, Ordering::SeqCst);
            if pid > 0 {
                // SAFETY: kill(2) on the companion's own pid, a child of this process that has
                // not been waited for (its thread reaps it after this)
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LmPort {
    /// This port, owning the worker (a run alone: the companion ends with the run).
    pub fn owning(mut self, worker: LmWorker) -> Self {
        self._worker = Some(worker);
        self
    }

    /// Ask for the evaluation of `params` (inference form) at `step`, unless one is in flight.
    pub fn submit(&mut self, step: u64, params: HostParams) -> Submitted {
        if self.failed {
            return Submitted::Failed;
        }
        if let Some(s) = self.in_flight {
            return Submitted::Busy(s);
        }
        let req = Request::Eval {
            member: self.member,
            step,
            params: Box::new(params),
        };
        if self.tx.send(req).is_err() {
            // the worker is gone: the next poll says so
            return Submitted::Failed;
        }
        self.in_flight = Some(step);
        Submitted::Sent
    }

    /// The outcomes that arrived, without waiting.
    pub fn poll(&mut self) -> Vec<LmOutcome> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(o) => out.extend(self.note(o)),
                Err(TryRecvError::Empty) => return out,
                Err(TryRecvError::Disconnected) => {
                    let step = self.in_flight.take();
                    out.extend(self.note(gone(step)));
                    return out;
                }
            }
        }
    }

    /// Wait for the evaluation in flight (if any) and return what arrived meanwhile and then.
    pub fn wait(&mut self) -> Vec<LmOutcome> {
        self.wait_unless(&mut || false).0
    }

    /// [`LmPort::wait`], asking `stop` every tenth of a second whether to give up; whether it
    /// gave up (the evaluation in flight is then abandoned).
    pub fn wait_unless(&mut self, stop: &mut dyn FnMut() -> bool) -> (Vec<LmOutcome>, bool) {
        let mut out = self.poll();
        while self.in_flight.is_some() {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => out.extend(self.note(o)),
                Err(RecvTimeoutError::Timeout) => {
                    if stop() {
                        self.in_flight = None;
                        return (out, true);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let step = self.in_flight.take();
                    out.extend(self.note(gone(step)));
                }
            }
        }
        (out, false)
    }

    /// The step of the evaluation in flight.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// Whether the companion has failed (no more evaluations will run).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Keep track of what is in flight; a failure is reported once (the refusals of requests
    /// sent before it arrived are the same failure).
    fn note(&mut self, o: LmOutcome) -> Option<LmOutcome> {
        match &o {
            LmOutcome::Scores { step, .. } if self.in_flight == Some(*step) => {
                self.in_flight = None
            }
            LmOutcome::Failed { .. } => {
                // whatever was in flight will not come back
                self.in_flight = None;
                if std::mem::replace(&mut self.failed, true) {
                    return None;
                }
            }
            _ => {}
        }
        Some(o)
    }
}

fn gone(step: Option<u64>) -> LmOutcome {
    LmOutcome::Failed {
        step,
        message: "the model companion's thread ended".into(),
    }
}

/// The worker thread: start and open the companion, then serve requests until told to quit.
fn serve(
    python: &std::path::Path,
    target: &LmTarget,
    log: &std::path::Path,
    rx: &Receiver<Request>,
    outs: &[Sender<LmOutcome>],
    pid: &AtomicI32,
) {
    let opened = target
        .check()
        .and_then(|()| Companion::start(python, Some(log), true))
        .inspect(|c| pid.store(c.pid() as i32, Ordering::SeqCst))
        .and_then(|mut c| c.open(target, &mut |_, _, _| {}).map(|b| (c, b)));
    let (mut companion, base) = match opened {
        Ok(v) => v,
        Err(e) => {
            let message = one_line(&e);
            for o in outs {
                let _ = o.send(LmOutcome::Failed {
                    step: None,
                    message: message.clone(),
                });
            }
            // refuse what still arrives, until told to quit
            while let Ok(Request::Eval { member, step, .. }) = rx.recv() {
                let _ = outs[member].send(LmOutcome::Failed {
                    step: Some(step),
                    message: message.clone(),
                });
            }
            return;
        }
    };
    let mut broken: Option<String> = None;
    while let Ok(Request::Eval {
        member,
        step,
        params,
    }) = rx.recv()
    {
        let started = std::time::Instant::now();
        let outcome = match &broken {
            Some(message) => LmOutcome::Failed {
                step: Some(step),
                message: message.clone(),
            },
            None => match base
                .check_width(&format!("the SAE of step {step}"), &params, target)
                .and_then(|()| companion.eval(&[&params], &mut |_, _, _| {}))
            {
                Ok(s) => LmOutcome::Scores {
                    step,
                    scores: LmScores::new(&base, &s[0]),
                    eval_tokens: base.positions,
                    secs: started.elapsed().as_secs_f64(),
                },
                Err(e) => {
                    let message = one_line(&e);
                    broken = Some(message.clone());
                    LmOutcome::Failed {
                        step: Some(step),
                        message,
                    }
                }
            },
        };
        let _ = outs[member].send(outcome);
    }
    companion.quit();
}

fn one_line(e: &LmEvalError) -> String {
    e.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> (LmPort, Receiver<Request>, Sender<LmOutcome>) {
        let (tx, requests) = channel();
        let (outcomes, rx) = channel();
        let p = LmPort {
            member: 0,
            tx,
            rx,
            in_flight: None,
            failed: false,
            _worker: None,
        };
        (p, requests, outcomes)
    }

    fn params() -> HostParams {
        crate::sae::model::HostParams {
            kind: crate::sae::model::Kind::Sae,
            d_in: 1,
            d_sae: 1,
            d_out: 1,
            w_enc: vec![1.0],
            b_enc: vec![0.0],
            w_dec: vec![1.0],
            b_dec: vec![0.0],
            w_skip: None,
            threshold: vec![0.0],
            topk: None,
        }
    }

    #[test]
    fn one_evaluation_in_flight_and_one_report_of_a_failure() {
        let (mut p, requests, outcomes) = port();
        assert_eq!(p.submit(5, params()), Submitted::Sent);
        assert_eq!(p.submit(6, params()), Submitted::Busy(5));
        assert!(matches!(
            requests.try_recv(),
            Ok(Request::Eval { step: 5, .. })
        ));
        // the companion failed to load while step 5 was queued: its failure, then the
        // refusal of step 5, are one failure
        for step in [None, Some(5)] {
            outcomes
                .send(LmOutcome::Failed {
                    step,
                    message: "cannot load".into(),
                })
                .unwrap();
        }
        let seen = p.poll();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(p.failed() && p.in_flight().is_none());
        assert_eq!(p.submit(7, params()), Submitted::Failed);
        assert!(p.wait().is_empty());
    }

    #[test]
    fn a_worker_that_vanishes_is_reported_once() {
        let (mut p, requests, outcomes) = port();
        assert_eq!(p.submit(3, params()), Submitted::Sent);
        drop((requests, outcomes));
        let seen = p.wait();
        assert!(
            matches!(&seen[..], [LmOutcome::Failed { step: Some(3), .. }]),
            "{seen:?}"
        );
        assert!(p.poll().is_empty());
    }
}
