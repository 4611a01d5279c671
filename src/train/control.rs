//! What flows between a job and whoever drives it: [`Control`] in, [`TrainEvent`] out, and the
//! rule for the controls taken between two steps ([`between_steps`]). A job is one run or a
//! sweep of many; [`JobControl`] and [`JobEvent`] are the same messages addressed to or from one
//! of its members (a run has one member, 0), so that one session layer drives either.

use crate::live::HyperEdit;
use crate::schema::record::Record;
use crate::schema::sweep::SweepRecord;
use std::sync::mpsc::{Receiver, RecvError, TryRecvError};

/// A command to the running trainer.
#[derive(Debug, Clone)]
pub enum Control {
    /// Apply an edit of the live hyperparameters (already validated, its changes computed).
    SetHyper(Box<HyperEdit>),
    /// Stop stepping until `Resume`.
    Pause,
    /// Continue after `Pause`.
    Resume,
    /// Write a checkpoint at the next step boundary.
    Checkpoint,
    /// Write a checkpoint and return.
    Stop,
}

/// What the trainer reports to its sink.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// A record, just appended to metrics.jsonl.
    Record(Record),
    /// Something worth telling that the log does not keep (rows skipped for NaN/Inf; their
    /// count is in every metrics record).
    Warning(String),
    /// Something worth telling that is not a problem (leftovers cleaned up at resume, …).
    Info(String),
}

/// A control for a job: for one member (by index) or, with `None`, for every member. A run is a
/// job of one member and takes every control as its own.
#[derive(Debug, Clone)]
pub struct JobControl {
    /// The member, or all.
    pub member: Option<usize>,
    /// What to do.
    pub control: Control,
}

impl JobControl {
    /// `control` for every member.
    pub fn all(control: Control) -> Self {
        Self {
            member: None,
            control,
        }
    }
}

/// What a job reports.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// A member's event (a run's are member 0's); its records are in its metrics.jsonl.
    Member(usize, TrainEvent),
    /// A sweep record, just appended to sweep.jsonl.
    Sweep(SweepRecord),
}

/// Where a trainer takes its controls from: a channel of [`Control`]s (a run driven alone), or
/// of [`JobControl`]s (a run driven as a job).
pub trait Controls {
    /// The next control if one is queued.
    fn try_take(&self) -> Result<Control, TryRecvError>;
    /// The next control, waiting for it.
    fn take(&self) -> Result<Control, RecvError>;
}

impl Controls for Receiver<Control> {
    fn try_take(&self) -> Result<Control, TryRecvError> {
        self.try_recv()
    }
    fn take(&self) -> Result<Control, RecvError> {
        self.recv()
    }
}

impl Controls for Receiver<JobControl> {
    fn try_take(&self) -> Result<Control, TryRecvError> {
        self.try_recv().map(|c| c.control)
    }
    fn take(&self) -> Result<Control, RecvError> {
        self.recv().map(|c| c.control)
    }
}

/// What the trainer does for the controls it takes between steps.
pub trait Steer {
    /// Why a control could not be carried out.
    type Error;
    /// Apply an edit; it takes effect at the next step.
    fn set_hyper(&mut self, edit: HyperEdit) -> Result<(), Self::Error>;
    /// Write a checkpoint now.
    fn checkpoint(&mut self) -> Result<(), Self::Error>;
    /// Stepping pauses (`true`) or resumes (`false`).
    fn paused(&mut self, paused: bool) -> Result<(), Self::Error>;
}

/// What the loop does after [`between_steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take the next step.
    Step,
    /// Stop with a checkpoint (asked for, or the sender is gone: nobody is driving any more).
    Stop,
}

/// Take the controls queued before the next step. Edits apply at once, so the next step uses
/// them; checkpoint requests are served once, after the queue is empty. Pause blocks here until
/// Resume or Stop, carrying out edits and checkpoints (at once) while paused.
pub fn between_steps<S: Steer>(controls: &impl Controls, s: &mut S) -> Result<Next, S::Error> {
    let mut checkpoint_now = false;
    loop {
        let msg = match controls.try_take() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => return Ok(Next::Stop),
        };
        match msg {
            Control::SetHyper(edit) => s.set_hyper(*edit)?,
            Control::Checkpoint => checkpoint_now = true,
            Control::Stop => return Ok(Next::Stop),
            Control::Resume => {}
            Control::Pause => {
                s.paused(true)?;
                loop {
                    match controls.take() {
                        Ok(Control::Resume) => break,
                        Ok(Control::SetHyper(edit)) => s.set_hyper(*edit)?,
                        Ok(Control::Checkpoint) => s.checkpoint()?,
                        Ok(Control::Pause) => {}
                        Ok(Control::Stop) | Err(_) => return Ok(Next::Stop),
                    }
                }
                s.paused(false)?;
            }
        }
    }
    if checkpoint_now {
        s.checkpoint()?;
    }
    Ok(Next::Step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::sync::mpsc::channel;

    /// Records what it was asked to do, in order.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Steer for Log {
        type Error = std::convert::Infallible;
        fn set_hyper(&mut self, edit: HyperEdit) -> Result<(), Self::Error> {
            self.0.push(format!("lr={}", edit.hyper.lr));
            Ok(())
        }
        fn checkpoint(&mut self) -> Result<(), Self::Error> {
            self.0.push("checkpoint".into());
            Ok(())
        }
        fn paused(&mut self, p: bool) -> Result<(), Self::Error> {
            self.0.push(if p { "pause" } else { "resume" }.into());
            Ok(())
        }
    }

    fn edit(lr: f64) -> Control {
        let cfg = parse("", "t", &[]).unwrap().validate("t").unwrap();
        let mut hyper = cfg.hyper.clone();
        hyper.lr = lr;
        Control::SetHyper(Box::new(HyperEdit {
            hyper,
            changes: Default::default(),
            source: crate::schema::record::EditSource::Key,
        }))
    }

    fn run(controls: Vec<Control>, keep_sender: bool) -> (Next, Vec<String>) {
        let (tx, rx) = channel();
        for c in controls {
            tx.send(c).unwrap();
        }
        let _kept = keep_sender.then_some(tx);
        let mut log = Log::default();
        let next = between_steps(&rx, &mut log).unwrap();
        (next, log.0)
    }

    #[test]
    fn nothing_queued_means_the_next_step() {
        assert_eq!(run(vec![], true), (Next::Step, vec![]));
    }

    #[test]
    fn edits_apply_in_order_before_the_next_step() {
        let (next, log) = run(vec![edit(1e-3), edit(2e-3)], true);
        assert_eq!(next, Next::Step);
        assert_eq!(log, ["lr=0.001", "lr=0.002"]);
    }

    #[test]
    fn checkpoint_requests_are_served_once_after_the_queue() {
        let (next, log) = run(
            vec![Control::Checkpoint, edit(1e-3), Control::Checkpoint],
            true,
        );
        assert_eq!(next, Next::Step);
        assert_eq!(log, ["lr=0.001", "checkpoint"]);
    }

    #[test]
    fn stop_ends_the_run_without_taking_what_follows() {
        let (next, log) = run(vec![Control::Stop, edit(1e-3)], true);
        assert_eq!(next, Next::Stop);
        assert!(log.is_empty(), "{log:?}");
    }

    #[test]
    fn a_vanished_driver_stops_the_run() {
        assert_eq!(
            run(vec![edit(1e-3)], false),
            (Next::Stop, vec!["lr=0.001".to_string()])
        );
    }

    #[test]
    fn pause_waits_for_resume_serving_edits_and_checkpoints_at_once() {
        let (next, log) = run(
            vec![
                Control::Pause,
                edit(1e-3),
                Control::Checkpoint,
                Control::Pause,
                Control::Resume,
            ],
            true,
        );
        assert_eq!(next, Next::Step);
        assert_eq!(log, ["pause", "lr=0.001", "checkpoint", "resume"]);
    }

    #[test]
    fn pause_blocks_until_a_control_arrives_from_another_thread() {
        let (tx, rx) = channel();
        tx.send(Control::Pause).unwrap();
        let driver = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            tx.send(edit(5e-4)).unwrap();
            tx.send(Control::Stop).unwrap();
        });
        let mut log = Log::default();
        assert_eq!(between_steps(&rx, &mut log).unwrap(), Next::Stop);
        driver.join().unwrap();
        assert_eq!(log.0, ["pause", "lr=0.0005"]);
    }

    #[test]
    fn an_error_stops_handling_and_is_returned() {
        struct Failing;
        impl Steer for Failing {
            type Error = &'static str;
            fn set_hyper(&mut self, _: HyperEdit) -> Result<(), Self::Error> {
                Err("disk full")
            }
            fn checkpoint(&mut self) -> Result<(), Self::Error> {
                Ok(())
            }
            fn paused(&mut self, _: bool) -> Result<(), Self::Error> {
                Ok(())
            }
        }
        let (tx, rx) = channel();
        tx.send(edit(1e-3)).unwrap();
        assert_eq!(between_steps(&rx, &mut Failing), Err("disk full"));
    }
}
