//! `jumpscope compare`: SAEs side by side on the sparsity/fidelity plane. The inputs are runs
//! (their last held-out evaluation, or their training reports), sweeps (their members) and
//! saved SAEs; with a store, every SAE is evaluated on the same rows, the fair comparison.
//! Each entry is marked when it is on the L0–FVU frontier of the set.

use crate::config::{Architecture, Config};
use crate::data::store::Store;
use crate::eval::evaluate;
use crate::metrics::stats::Inactive;
use crate::sae::io;
use crate::sae::model::Kind;
use crate::schema::record::{Record, read_log};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What cannot be compared: one line naming the input.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Nothing to compare.
    #[error("nothing to compare: give run directories, sweeps or saved SAEs")]
    Empty,
    /// `--held-out` of a saved SAE: no run says which rows were held out.
    #[error(
        "{0}: --held-out needs runs (a run's configuration says which rows it held out of training); a saved SAE has none"
    )]
    NotARun(PathBuf),
    /// `--held-out` of a run that held out nothing.
    #[error("{0}: --held-out: the run held out no rows (data.eval_tokens = 0)")]
    NoHeldOut(PathBuf),
    /// An input is none of the things compare reads.
    #[error(
        "{0}: not a run (config.toml + metrics.jsonl), a sweep (sweep.toml) or a saved SAE (SAELens directory, params.npz)"
    )]
    Unknown(PathBuf),
    /// A saved SAE has no log: it needs a store.
    #[error(
        "{0}: a saved SAE has no evaluation of its own: pass --store to evaluate every SAE on the same rows"
    )]
    NeedsStore(PathBuf),
    /// A transcoder evaluated on a store without its target.
    #[error(
        "{0}: a transcoder: pass --target-store (the site it reconstructs, rows paired with --store's); every SAE is then measured on the target too"
    )]
    NeedsTarget(PathBuf),
    /// A run has not reported yet.
    #[error("{0}: no report in metrics.jsonl yet: nothing to compare")]
    NoReport(PathBuf),
    /// Two inputs read activations of different widths.
    #[error(
        "{a} reads d_in = {da}, but {b} reads d_in = {db}: SAEs of different widths cannot be compared"
    )]
    Width {
        /// The first input.
        a: PathBuf,
        /// Its width.
        da: usize,
        /// The one that differs.
        b: PathBuf,
        /// Its width.
        db: usize,
    },
    /// The store does not match the SAEs.
    #[error("{store} (dataset `{dataset}`) has d_in = {sd}, but {sae} reads d_in = {d}")]
    StoreWidth {
        /// The store's first file.
        store: PathBuf,
        /// Its dataset.
        dataset: String,
        /// Its width.
        sd: usize,
        /// The SAE.
        sae: PathBuf,
        /// The SAE's width.
        d: usize,
    },
    /// Reading something failed.
    #[error("{path}: {why}")]
    Read {
        /// What.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> CompareError {
    CompareError::Read {
        path: path.to_path_buf(),
        why: e.to_string().replace('\n', " "),
    }
}

/// One thing to compare.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A run directory.
    Run(PathBuf),
    /// A saved SAE.
    Sae(PathBuf),
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Short name (the run directory's, or the SAE's).
    pub name: String,
    /// Where it came from.
    pub path: PathBuf,
    /// Architecture.
    pub architecture: String,
    /// What it reconstructs: its input (`sae`), or a target site (`transcoder`,
    /// `skip-transcoder`), whose FVU the numbers are then of.
    pub kind: Kind,
    /// Activation width.
    pub d_in: usize,
    /// The width of what it reconstructs (`d_in` for an SAE).
    pub d_out: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// The key hyperparameters (runs): λ, target L0, k, lr, as set, by key.
    pub hyper: BTreeMap<String, HyperValue>,
    /// Mean features firing per token.
    pub l0: f64,
    /// Normalised MSE: Σ‖x − x̂‖² / Σ‖x‖² (scale-free; `null` for logs of earlier versions).
    #[serde(with = "crate::metrics::nullable")]
    pub mse_norm: f64,
    /// Fraction of variance unexplained.
    pub fvu: f64,
    /// Features that did not fire, when known: `silent` on the tokens measured (a store, or
    /// the run's held-out rows), or `dead` in the run's training window (its log's last
    /// report), with the tokens it was measured over.
    pub inactive: Option<Inactive>,
    /// What the numbers were measured on.
    pub basis: Basis,
    /// On the L0–FVU frontier of this set.
    pub on_frontier: bool,
    /// ΔLM loss with the SAE spliced into the model (the run's newest `lm-eval`, or measured
    /// with `--model`); `null` when unknown.
    pub delta_lm_loss: Option<f64>,
    /// CE loss recovered, likewise.
    pub ce_recovered: Option<f64>,
    /// KL(clean ‖ spliced), likewise.
    pub kl: Option<f64>,
}

/// What the table's units mean, printed under it.
pub const LEGEND: &str = "nMSE = Σ‖x−x̂‖² / Σ‖x‖² (normalised, scale-free); dead = no firing in the run's last \
train.dead_window_tokens training tokens; silent = no firing on any token of the basis";

impl Entry {
    /// The architecture, with the kind for a transcoder: `jumprelu`, `topk/tc` (transcoder), `relu/stc` (skip-transcoder).
    pub fn arch_label(&self) -> String {
        match self.kind {
            Kind::Sae => self.architecture.clone(),
            Kind::Transcoder => format!("{}/tc", self.architecture),
            Kind::SkipTranscoder => format!("{}/stc", self.architecture),
        }
    }

    /// `silent 1126 (36.7%)`, `dead 0 (0.0%)`, or `-` when not known.
    pub fn inactive_text(&self) -> String {
        self.inactive.map_or("-".into(), |i| {
            format!("{} {}", i.measure.name(), i.short())
        })
    }
}

/// A hyperparameter's value, typed so that JSON holds numbers as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HyperValue {
    /// A count (k).
    Int(u64),
    /// A real (λ, lr, target L0).
    Real(f64),
}

impl std::fmt::Display for HyperValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HyperValue::Int(v) => write!(f, "{v}"),
            HyperValue::Real(v) => write!(f, "{v}"),
        }
    }
}

/// What an entry's numbers were measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Basis {
    /// Every SAE on the same rows of one store.
    Store {
        /// Tokens evaluated.
        tokens: u64,
        /// Only the rows each run held out of training (`--held-out`).
        held_out: bool,
    },
    /// The run's last held-out evaluation.
    HeldOut {
        /// The step it was taken at.
        step: u64,
    },
    /// The run's last training report.
    Training {
        /// The step it was taken at.
        step: u64,
    },
    /// Every SAE spliced into the model on the same tokens (L0 and FVU at the site).
    Model {
        /// Positions evaluated.
        tokens: u64,
    },
}

impl std::fmt::Display for Basis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Basis::Store {
                tokens,
                held_out: false,
            } => write!(f, "store ({tokens} tokens)"),
            Basis::Store {
                tokens,
                held_out: true,
            } => write!(f, "store, held-out rows ({tokens} tokens)"),
            Basis::HeldOut { step } => write!(f, "held-out @ step {step}"),
            Basis::Training { step } => write!(f, "training @ step {step}"),
            Basis::Model { tokens } => write!(f, "model ({tokens} tokens)"),
        }
    }
}

impl Entry {
    /// The key hyperparameters as `k=v k=v`, by their short names, the sparsity's first.
    pub fn hyper_text(&self) -> String {
        HYPER_ORDER
            .iter()
            .filter_map(|key| {
                let v = self.hyper.get(&key.path())?;
                Some(format!("{}={v}", key.short()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Expand the paths: a sweep (sweep.toml) into its members, a run directory as a run, anything
/// else as a saved SAE (checked when read).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<Input>, CompareError> {
    let mut out = Vec::new();
    for p in paths {
        if p.join("sweep.toml").is_file() {
            let spec = crate::sweep::spec::load(&p.join("sweep.toml"), &[], Some(p))
                .map_err(|e| read_err(p, e))?;
            out.extend(
                spec.members
                    .iter()
                    .map(|m| p.join(&m.name))
                    .filter(|d| d.join("metrics.jsonl").is_file())
                    .map(Input::Run),
            );
        } else if p.join("metrics.jsonl").is_file() && p.join("config.toml").is_file() {
            out.push(Input::Run(p.clone()));
        } else if p.exists() {
            out.push(Input::Sae(p.clone()));
        } else {
            return Err(CompareError::Unknown(p.clone()));
        }
    }
    if out.is_empty() {
        return Err(CompareError::Empty);
    }
    Ok(out)
}

fn name_of(p: &Path) -> String {
    let last = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string());
    // a run's sae/ directory is named after its run
    if last == "sae"
        && let Some(parent) = p.parent().and_then(|q| q.file_name())
    {
        return parent.to_string_lossy().into_owned();
    }
    last
}

/// The hyperparameters that tell runs apart, in the order a row shows them.
const HYPER_ORDER: [&crate::schema::keys::Key; 4] = [
    &crate::schema::keys::K,
    &crate::schema::keys::SPARSITY_COEFFICIENT,
    &crate::schema::keys::TARGET_L0,
    &crate::schema::keys::LR,
];

/// The hyperparameters that tell runs apart, as set in `cfg`, by key.
fn key_hyper(cfg: &Config) -> BTreeMap<String, HyperValue> {
    use crate::schema::keys::{K, LR, SPARSITY_COEFFICIENT, TARGET_L0};
    let h = &cfg.hyper;
    let arch = cfg.sae.architecture;
    let mut out = BTreeMap::new();
    if arch.is_topk() {
        out.insert(K.path(), HyperValue::Int(h.k as u64));
    } else {
        out.insert(
            SPARSITY_COEFFICIENT.path(),
            HyperValue::Real(h.sparsity_coefficient),
        );
        if arch == Architecture::JumpRelu
            && let Some(t) = h.target_l0
        {
            out.insert(TARGET_L0.path(), HyperValue::Real(t));
        }
    }
    out.insert(LR.path(), HyperValue::Real(h.lr));
    out
}

fn run_config(dir: &Path) -> Result<Config, CompareError> {
    let path = dir.join("config.toml");
    crate::config::load(&path, &[])
        .and_then(|f| f.validate(&path.display().to_string()))
        .map_err(|e| read_err(&path, e))
}

/// An entry from a run's own log: its last held-out evaluation, else its last training report.
fn from_log(dir: &Path) -> Result<Entry, CompareError> {
    let cfg = run_config(dir)?;
    let log = dir.join("metrics.jsonl");
    let recs = read_log(&log).map_err(|e| read_err(&log, e))?;
    let (mut d_in, mut d_sae, mut d_out) = (0, 0, None);
    let (mut eval, mut metrics, mut lm) = (None, None, None);
    for r in recs {
        match r {
            Record::Start {
                d_in: a,
                d_sae: b,
                d_out: c,
                ..
            }
            | Record::Resume {
                d_in: a,
                d_sae: b,
                d_out: c,
                ..
            } => (d_in, d_sae, d_out) = (a, b, c),
            Record::Eval { step, eval: e, .. } => eval = Some((step, e)),
            Record::Metrics(m) => metrics = Some(m),
            // the newest: of the latest step, the last written
            Record::LmEval(r) if lm.is_none_or(|(s, _)| r.step >= s) => {
                lm = Some((r.step, r.scores))
            }
            _ => {}
        }
    }
    let mut e = Entry {
        name: name_of(dir),
        path: dir.to_path_buf(),
        architecture: cfg.sae.architecture.name().to_string(),
        kind: cfg.sae.kind,
        d_in,
        d_out: d_out.unwrap_or(d_in),
        d_sae,
        hyper: key_hyper(&cfg),
        l0: f64::NAN,
        mse_norm: f64::NAN,
        fvu: f64::NAN,
        inactive: None,
        basis: Basis::Training { step: 0 },
        on_frontier: false,
        delta_lm_loss: lm.map(|(_, s)| s.delta_lm_loss),
        ce_recovered: lm.map(|(_, s)| s.ce_recovered),
        kl: lm.map(|(_, s)| s.kl),
    };
    match (eval, metrics) {
        (Some((step, ev)), _) => {
            (e.l0, e.mse_norm, e.fvu) = (ev.l0, ev.mse_norm, ev.fvu);
            e.inactive = Some(ev.inactive());
            e.basis = Basis::HeldOut { step };
        }
        (None, Some(m)) => {
            (e.l0, e.mse_norm, e.fvu) = (m.l0, m.mse_norm, 1.0 - m.explained_variance);
            e.inactive = Some(m.inactive());
            e.basis = Basis::Training { step: m.step };
        }
        (None, None) => return Err(CompareError::NoReport(dir.to_path_buf())),
    }
    Ok(e)
}

/// Compare from the inputs' own logs (no store). Saved SAEs need a store.
pub fn from_logs(inputs: &[Input]) -> Result<Vec<Entry>, CompareError> {
    let mut out = Vec::new();
    for i in inputs {
        match i {
            Input::Run(d) => out.push(from_log(d)?),
            Input::Sae(p) => return Err(CompareError::NeedsStore(p.clone())),
        }
    }
    same_width(&out)?;
    mark_frontier(&mut out);
    Ok(out)
}

/// The SAE of an input in inference form: a saved one as it is; a run's `sae/` when it has
/// finished, else its newest checkpoint folded the way `export` folds it.
fn load_sae(i: &Input) -> Result<(io::LoadedSae, Option<Config>, PathBuf), CompareError> {
    match i {
        Input::Sae(p) => Ok((io::load(p).map_err(|e| read_err(p, e))?, None, p.clone())),
        Input::Run(d) => {
            let cfg = run_config(d)?;
            // its sae/, or while it trains its newest checkpoint (folded in memory, as `eval`
            // and `inspect` read a run)
            let (loaded, from) = crate::train::export::load_any(d).map_err(|e| read_err(d, e))?;
            let path = if from.ends_with("sae") {
                from
            } else {
                d.clone()
            };
            Ok((loaded, Some(cfg), path))
        }
    }
}

/// The entry of a loaded SAE, nothing measured yet (NaN, unknown).
fn loaded_entry(sae: &io::LoadedSae, cfg: &Option<Config>, path: &Path, basis: Basis) -> Entry {
    Entry {
        name: name_of(path),
        path: path.to_path_buf(),
        architecture: sae.architecture.name().to_string(),
        kind: sae.params.kind(),
        d_in: sae.params.d_in,
        d_out: sae.params.d_out,
        d_sae: sae.params.d_sae,
        hyper: cfg.as_ref().map(key_hyper).unwrap_or_default(),
        l0: f64::NAN,
        mse_norm: f64::NAN,
        fvu: f64::NAN,
        inactive: None,
        basis,
        on_frontier: false,
        delta_lm_loss: None,
        ce_recovered: None,
        kl: None,
    }
}

/// Evaluate every input on every row of `store`, or with `held_out` on the rows each run held
/// out of training (`progress(done, of)` per SAE). With a `target` store (a transcoder's, its
/// rows paired with `store`'s), every input is measured on the target: a transcoder reads
/// `store` and reconstructs `target`, an SAE reads and reconstructs `target`.
pub fn on_store(
    inputs: &[Input],
    (store, target): (&Store, Option<&Store>),
    (batch, held_out): (usize, bool),
    device: &burn::tensor::Device,
    mut progress: impl FnMut(usize, usize, u64, u64),
) -> Result<Vec<Entry>, CompareError> {
    let mut loaded = Vec::new();
    for i in inputs {
        loaded.push(load_sae(i)?);
    }
    let width = |s: &Store, sae: &PathBuf, d: usize| {
        if d == s.d_in() {
            return Ok(());
        }
        Err(CompareError::StoreWidth {
            store: s.paths()[0].to_path_buf(),
            dataset: s.dataset().to_string(),
            sd: s.d_in(),
            sae: sae.clone(),
            d,
        })
    };
    // a transcoder without its target first: the widths would not say what is missing
    if target.is_none()
        && let Some((_, _, path)) = loaded.iter().find(|l| l.0.params.kind().has_target())
    {
        return Err(CompareError::NeedsTarget(path.clone()));
    }
    for (sae, _, path) in &loaded {
        match (sae.params.kind().has_target(), target) {
            (true, Some(t)) => {
                width(store, path, sae.params.d_in)?;
                width(t, path, sae.params.d_out)?;
            }
            (true, None) => return Err(CompareError::NeedsTarget(path.clone())),
            (false, t) => width(t.unwrap_or(store), path, sae.params.d_in)?,
        }
    }
    let n = loaded.len();
    let mut out = Vec::new();
    for (k, (sae, cfg, path)) in loaded.iter().enumerate() {
        let rows = match (held_out, cfg) {
            (false, _) => 0..store.rows(),
            (true, Some(c)) if c.data.eval_tokens > 0 => {
                crate::eval::held_out_rows(store.rows(), c.data.eval_tokens)
            }
            (true, Some(_)) => return Err(CompareError::NoHeldOut(path.clone())),
            (true, None) => return Err(CompareError::NotARun(path.clone())),
        };
        // a transcoder from `store` to `target`; an SAE on what is reconstructed
        let pair = match (sae.params.kind().has_target(), target) {
            (true, t) => (store, t),
            (false, t) => (t.unwrap_or(store), None),
        };
        let r = evaluate(&sae.params, pair, rows, batch, device, |d, t| {
            progress(k, n, d, t)
        })
        .map_err(|e| read_err(path, e))?;
        out.push(Entry {
            l0: r.l0,
            mse_norm: r.mse_norm,
            fvu: r.fvu,
            inactive: Some(r.inactive()),
            ..loaded_entry(
                sae,
                cfg,
                path,
                Basis::Store {
                    tokens: r.n_tokens,
                    held_out,
                },
            )
        });
    }
    mark_frontier(&mut out);
    Ok(out)
}

/// Splice every input into the model of `target` on the same tokens, through one companion
/// (`progress(what, done, of)`): ΔLM loss, CE recovered and KL, with L0 and FVU at the site.
pub fn on_model(
    inputs: &[Input],
    python: &Path,
    target: &crate::lmeval::LmTarget,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<Entry>, CompareError> {
    let mut loaded = Vec::new();
    for i in inputs {
        loaded.push(load_sae(i)?);
    }
    let saes: Vec<(String, crate::sae::model::HostParams)> = loaded
        .iter()
        .map(|(sae, _, path)| (path.display().to_string(), sae.params.clone()))
        .collect();
    let (base, scores) = crate::lmeval::evaluate(python, target, &saes, progress).map_err(|e| {
        CompareError::Read {
            path: PathBuf::from(&target.model),
            why: e.to_string(),
        }
    })?;
    let mut out: Vec<Entry> = loaded
        .iter()
        .zip(&scores)
        .map(|((sae, cfg, path), s)| Entry {
            l0: s.l0,
            fvu: s.fvu,
            delta_lm_loss: Some(s.delta_lm_loss),
            ce_recovered: Some(s.ce_recovered),
            kl: Some(s.kl),
            ..loaded_entry(
                sae,
                cfg,
                path,
                Basis::Model {
                    tokens: base.positions,
                },
            )
        })
        .collect();
    mark_frontier(&mut out);
    Ok(out)
}

/// Entries compare when they reconstruct the same width (an SAE on a site, a transcoder into it).
fn same_width(entries: &[Entry]) -> Result<(), CompareError> {
    if let Some(first) = entries.first()
        && let Some(other) = entries.iter().find(|e| e.d_out != first.d_out)
    {
        return Err(CompareError::Width {
            a: first.path.clone(),
            da: first.d_out,
            b: other.path.clone(),
            db: other.d_out,
        });
    }
    Ok(())
}

/// Names that collide (two sweeps' members named alike) get their parent directory's name.
fn distinct_names(entries: &mut [Entry]) {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for e in entries.iter() {
        *seen.entry(e.name.clone()).or_default() += 1;
    }
    for e in entries.iter_mut() {
        if seen[&e.name] > 1 {
            // the directory holding the run (a run's sae/ is named after its run)
            let run = if e.path.ends_with("sae") {
                e.path.parent()
            } else {
                Some(e.path.as_path())
            };
            if let Some(p) = run.and_then(Path::parent).and_then(Path::file_name) {
                e.name = format!("{}/{}", p.to_string_lossy(), e.name);
            }
        }
    }
}

fn mark_frontier(entries: &mut [Entry]) {
    distinct_names(entries);
    let points: Vec<(f64, f64)> = entries.iter().map(|e| (e.l0, e.fvu)).collect();
    for i in crate::sweep::frontier::pareto(&points) {
        entries[i].on_frontier = true;
    }
}
