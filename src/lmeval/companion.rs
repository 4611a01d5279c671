//! One model companion process: the Python files the binary carries written to a private
//! directory, the process started there, and its JSON-lines protocol (requests on stdin, replies
//! and progress on stdout, everything else it prints into a log file, never onto the screen).

use super::{LmEvalError, LmTarget};
use crate::sae::io::write_safetensors;
use crate::sae::model::HostParams;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The companion and the module of site hooks it shares with `scripts/harvest.py`.
const FILES: [(&str, &str); 2] = [
    (
        "lm_companion.py",
        include_str!("../../scripts/lm_companion.py"),
    ),
    ("lm_sites.py", include_str!("../../scripts/lm_sites.py")),
];

/// The clean and ablated passes over the target's tokens, and the site's width.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Baseline {
    /// The site's activation width.
    pub d_site: usize,
    /// The target site's width, in a session that splices transcoders.
    #[serde(default)]
    pub d_target: Option<usize>,
    /// The model's vocabulary size.
    pub vocab_size: usize,
    /// Sequences.
    pub n_seq: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Every position (`n_seq · seq_len`): what KL, L0 and FVU average over.
    pub positions: u64,
    /// Predicted positions (`n_seq · (seq_len − 1)`): what cross-entropy averages over.
    pub predicted: u64,
    /// Cross-entropy without the SAE.
    pub ce_clean: f64,
    /// Cross-entropy with the site zero-ablated.
    pub ce_ablated: f64,
    /// Seconds the model took to load and run both passes.
    pub secs: f64,
}

impl Baseline {
    /// A dictionary `p` fits the session: an SAE the site (and a session without a target
    /// site), a transcoder the site and the target site; else a one-line error naming both.
    pub fn check_width(&self, name: &str, p: &HostParams, t: &LmTarget) -> Result<(), LmEvalError> {
        let user = |m: String| Err(LmEvalError::User(m));
        match (p.kind().has_target(), &t.target_site, self.d_target) {
            (true, None, _) => {
                return user(format!(
                    "{name}: a {} replaces another site than it reads: name it (--target-site, or lm_eval.target_site; mlp_out for an MLP's transcoder)",
                    p.kind().name()
                ));
            }
            (false, Some(ts), _) => {
                return user(format!(
                    "{name}: an SAE is spliced at the site it reads: leave out the target site ({ts}), which is for transcoders"
                ));
            }
            (true, Some(_), Some(d)) if d != p.d_out => {
                return user(format!(
                    "{name}: the transcoder's d_out is {}, but {} writes {d} wide",
                    p.d_out,
                    t.describe()
                ));
            }
            _ => {}
        }
        if p.d_in == self.d_site {
            return Ok(());
        }
        user(format!(
            "{name}: the SAE's d_in is {}, but {} is {} wide",
            p.d_in,
            t.describe(),
            self.d_site
        ))
    }
}

/// One SAE's spliced pass.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Spliced {
    /// Cross-entropy with the SAE spliced in.
    pub ce_spliced: f64,
    /// KL(clean ‖ spliced).
    pub kl: f64,
    /// Mean active features per position.
    pub l0: f64,
    /// Fraction of variance unexplained at the site.
    pub fvu: f64,
}

/// A running companion.
pub struct Companion {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
    log: PathBuf,
    /// Whether the log outlives the companion (a run's `lm-eval.log`) and can be pointed at.
    log_kept: bool,
    /// SAE files written for the companion so far (names are never reused).
    written: u64,
}

impl Companion {
    /// Start the companion with `python`; what it prints besides the protocol goes to `log`
    /// (default: a file in its private directory); `background`: at the lowest CPU priority
    /// (beside a training job, which must not slow down for it). Waits until it has imported
    /// torch and transformers; a Python without them is a [`LmEvalError::User`] naming what to
    /// install.
    pub fn start(python: &Path, log: Option<&Path>, background: bool) -> Result<Self, LmEvalError> {
        let dir = tempfile::Builder::new()
            .prefix("jumpscope-lm-")
            .tempdir()
            .map_err(|source| LmEvalError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        for (name, text) in FILES {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(|source| LmEvalError::Io { path, source })?;
        }
        let log_kept = log.is_some();
        let log = log.map_or_else(|| dir.path().join("companion.log"), Path::to_path_buf);
        let err_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| LmEvalError::Io {
                path: log.clone(),
                source,
            })?;
        let mut child = Command::new(python)
            .arg("-u")
            .arg("-B")
            .arg(dir.path().join("lm_companion.py"))
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .env("TOKENIZERS_PARALLELISM", "false")
            .env("JUMPSCOPE_LM_NICE", if background { "19" } else { "0" })
            .envs(background.then_some(("OMP_NUM_THREADS", "1")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .map_err(|why| LmEvalError::Spawn {
                python: python.to_path_buf(),
                why,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(LmEvalError::Failed("its pipes could not be opened".into()));
        };
        let mut c = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            dir,
            log,
            log_kept,
            written: 0,
        };
        c.reply("ready", &mut |_, _, _| {})?;
        Ok(c)
    }

    /// Load the model and run the clean and ablated passes over the target's tokens.
    pub fn open(
        &mut self,
        target: &LmTarget,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Baseline, LmEvalError> {
        self.send(&target.request())?;
        let v = self.reply("open", progress)?;
        serde_json::from_value(v)
            .map_err(|e| LmEvalError::Failed(format!("its reply to open: {e}")))
    }

    /// Splice each SAE (inference form) in turn, in one pass over the tokens.
    pub fn eval(
        &mut self,
        saes: &[&HostParams],
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Vec<Spliced>, LmEvalError> {
        let mut paths = Vec::new();
        for p in saes {
            paths.push(self.write_sae(p)?);
        }
        self.send(&serde_json::json!({"op": "eval", "saes": paths}))?;
        let v = self.reply("eval", progress);
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        #[derive(Deserialize)]
        struct Reply {
            results: Vec<Spliced>,
        }
        let r: Reply = serde_json::from_value(v?)
            .map_err(|e| LmEvalError::Failed(format!("its reply to eval: {e}")))?;
        if r.results.len() != saes.len() {
            return Err(LmEvalError::Failed(format!(
                "{} results for {} SAEs",
                r.results.len(),
                saes.len()
            )));
        }
        Ok(r.results)
    }

    /// Ask it to exit and wait for it.
    pub fn quit(mut self) {
        let _ = self.send(&serde_json::json!({"op": "quit"}));
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stderr goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    fn write_sae(&mut self, p: &HostParams) -> Result<PathBuf, LmEvalError> {
        self.written += 1;
        let path = self
            .dir
            .path()
            .join(format!("sae-{}.safetensors", self.written));
        let meta = HashMap::from([(
            "topk".to_string(),
            p.topk.map(|k| k.to_string()).unwrap_or_default(),
        )]);
        let (d, e, m) = (p.d_in, p.d_out, p.d_sae);
        let mut tensors: Vec<(&str, &[f32], Vec<usize>)> = vec![
            ("W_enc", &p.w_enc, vec![d, m]),
            ("b_enc", &p.b_enc, vec![m]),
            ("W_dec", &p.w_dec, vec![m, e]),
            ("b_dec", &p.b_dec, vec![e]),
            ("threshold", &p.threshold, vec![m]),
        ];
        // a skip-transcoder's skip in our layout, [d_in, d_out]
        if let Some(w) = &p.w_skip {
            tensors.push(("W_skip", w, vec![d, e]));
        }
        write_safetensors(&path, &tensors, Some(meta)).map_err(|e| LmEvalError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(path)
    }

    fn send(&mut self, req: &serde_json::Value) -> Result<(), LmEvalError> {
        let mut line = req.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|_| self.died())
    }

    /// Read lines until the reply `ok` (or `ready`), passing progress on; an `error` reply is
    /// returned as the error it names.
    fn reply(
        &mut self,
        ok: &str,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<serde_json::Value, LmEvalError> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.died()),
                Ok(_) => {}
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(msg) = v["error"].as_str() {
                return Err(if v["user"].as_bool() == Some(true) {
                    LmEvalError::User(msg.to_string())
                } else {
                    LmEvalError::Failed(format!("{msg}{}", self.log_note()))
                });
            }
            if let Some(what) = v["progress"].as_str() {
                progress(
                    what,
                    v["done"].as_u64().unwrap_or(0),
                    v["total"].as_u64().unwrap_or(0),
                );
                continue;
            }
            if v["ok"] == ok || (ok == "ready" && v["ready"] == true) {
                return Ok(v);
            }
        }
    }

    /// The error for a companion that stopped answering: its exit status and last words.
    fn died(&mut self) -> LmEvalError {
        let status = self
            .child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(nothing on stderr)");
        LmEvalError::Failed(format!(
            "it exited ({status}); its last line: {}{}",
            last.trim(),
            self.log_note()
        ))
    }

    /// `; its log: PATH` where the log outlives the companion.
    fn log_note(&self) -> String {
        if self.log_kept {
            format!("; its log: {}", self.log.display())
        } else {
            String::new()
        }
    }
}

impl Drop for Companion {
    fn drop(&mut self) {
        // a companion dropped without quit (an error, a stop) must not outlive us
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
