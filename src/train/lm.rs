//! The model in the loop while a run trains (`[lm_eval]`): every `lm_eval.every` steps the SAE
//! in inference form goes to the model companion without waiting; results come back as
//! `lm-eval` records at a later step; the final step is always evaluated, and waited for.

use crate::config::Config;
use crate::lmeval::{LmOutcome, LmPort, LmWorker, Submitted, python};
use crate::schema::record::{LmEvalRecord, Record};
use crate::train::control::TrainEvent;
use crate::train::trainer::{TrainError, Trainer};
use std::path::Path;

type Sink<'a> = &'a mut dyn FnMut(TrainEvent);

/// Start the model companion for a job of `members` members whose configuration (the first
/// member's, for a sweep) is `cfg`, its stderr into `dir/lm-eval.log`; `None` without
/// `[lm_eval]`.
pub fn start_worker(cfg: &Config, dir: &Path, members: usize) -> Option<(LmWorker, Vec<LmPort>)> {
    let lm = cfg.lm_eval.as_ref()?;
    Some(LmWorker::start(
        python(None, lm.python.as_deref()),
        lm.target.clone(),
        dir.join("lm-eval.log"),
        members,
    ))
}

impl Trainer {
    /// Put the model in the loop through `port` (a sweep's member; a run alone starts its own).
    pub fn attach_lm(&mut self, port: LmPort) {
        self.res.lm = Some(port);
    }

    /// Start the companion of a run alone, if its configuration has `[lm_eval]`.
    pub(crate) fn start_own_lm(&mut self) {
        if let Some((worker, mut ports)) = start_worker(&self.res.cfg, &self.res.run_dir, 1)
            && let Some(port) = ports.pop()
        {
            self.res.lm = Some(port.owning(worker));
        }
    }

    /// Between steps: record what came back, and send the SAE when an evaluation is due.
    pub(super) fn lm_tick(&mut self, sink: Sink<'_>) -> Result<(), TrainError> {
        let Some(port) = self.res.lm.as_mut() else {
            return Ok(());
        };
        let outcomes = port.poll();
        self.lm_record(outcomes, sink)?;
        let live = self.res.cfg.hyper.lm_eval;
        let step = self.st.step;
        if live.enabled && step < self.res.cfg.total_steps() && step.is_multiple_of(live.every) {
            self.lm_submit(sink)?;
        }
        Ok(())
    }

    /// At the end: wait for the evaluation in flight, then evaluate the final step (unless it
    /// was just sent) and wait for it; `stop` (asked while waiting) gives up the waiting.
    pub(super) fn lm_final(
        &mut self,
        stop: &mut dyn FnMut() -> bool,
        sink: Sink<'_>,
    ) -> Result<(), TrainError> {
        let enabled = self.res.cfg.hyper.lm_eval.enabled;
        if self.res.lm.is_none() {
            return Ok(());
        }
        if !self.lm_wait(stop, sink)? || !enabled || self.st.lm_last == Some(self.st.step) {
            return Ok(());
        }
        if self.lm_submit(sink)? {
            sink(TrainEvent::Info(format!(
                "lm-eval: evaluating the final step {} with the model in the loop",
                self.st.step
            )));
            self.lm_wait(stop, sink)?;
        }
        Ok(())
    }

    /// Wait for the evaluation in flight and record what arrives; false when `stop` gave up.
    fn lm_wait(
        &mut self,
        stop: &mut dyn FnMut() -> bool,
        sink: Sink<'_>,
    ) -> Result<bool, TrainError> {
        let Some(port) = self.res.lm.as_mut() else {
            return Ok(false);
        };
        let (outcomes, gave_up) = port.wait_unless(stop);
        self.lm_record(outcomes, sink)?;
        if gave_up {
            self.st.lm_pending = None;
            let rec = Record::LmEvalFailed {
                step: self.st.step,
                tokens: self.st.tokens_seen,
                message: "stopped while waiting for the final evaluation: it was abandoned".into(),
            };
            self.emit(rec, sink)?;
        }
        Ok(!gave_up)
    }

    /// Send the current SAE; whether it was sent.
    fn lm_submit(&mut self, sink: Sink<'_>) -> Result<bool, TrainError> {
        let params = self.inference_params();
        let (step, tokens) = (self.st.step, self.st.tokens_seen);
        let Some(port) = self.res.lm.as_mut() else {
            return Ok(false);
        };
        match port.submit(step, params) {
            Submitted::Sent => {
                self.st.lm_pending = Some((step, tokens));
                self.st.lm_last = Some(step);
                Ok(true)
            }
            Submitted::Busy(running) => {
                self.emit(
                    Record::LmEvalSkipped {
                        step,
                        tokens,
                        running,
                    },
                    sink,
                )?;
                Ok(false)
            }
            Submitted::Failed => Ok(false),
        }
    }

    fn lm_record(&mut self, outcomes: Vec<LmOutcome>, sink: Sink<'_>) -> Result<(), TrainError> {
        for o in outcomes {
            let rec = match o {
                LmOutcome::Scores {
                    step,
                    scores,
                    eval_tokens,
                    ..
                } => {
                    let tokens = match self.st.lm_pending.take() {
                        Some((s, t)) if s == step => t,
                        _ => self.st.tokens_seen,
                    };
                    let Some(lm) = self.res.cfg.lm_eval.as_ref() else {
                        continue;
                    };
                    Record::LmEval(Box::new(LmEvalRecord {
                        step,
                        tokens,
                        scores,
                        eval_tokens,
                        model: lm.target.model.clone(),
                        layer: lm.target.layer,
                        site: lm.target.site.clone(),
                        target_site: lm.target.target_site.clone(),
                    }))
                }
                LmOutcome::Failed { message, .. } => {
                    self.st.lm_pending = None;
                    Record::LmEvalFailed {
                        step: self.st.step,
                        tokens: self.st.tokens_seen,
                        message,
                    }
                }
            };
            self.emit(rec, sink)?;
        }
        Ok(())
    }
}
