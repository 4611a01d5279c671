//! Why training could not start or go on: [`TrainError`], one variant per source.

use crate::config::ConfigError;
use crate::data::batches::BatchError;
use crate::data::store::StoreError;
use crate::device::DeviceError;
use crate::sae::io::SaeIoError;
use crate::train::checkpoint::CheckpointError;
use std::path::{Path, PathBuf};

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Batch problem (NaN rows under "stop", …).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Device not available.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Checkpoint problem.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Another process writes the run directory.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// SAE file problem.
    #[error(transparent)]
    SaeIo(#[from] SaeIoError),
    /// `init_from` does not fit the store.
    #[error(
        "{path}: SAE has d_in = {sae}, but store {store} (dataset `{dataset}`) has d_in = {data}"
    )]
    InitMismatch {
        /// The SAE file.
        path: PathBuf,
        /// Its d_in.
        sae: usize,
        /// The first store file.
        store: PathBuf,
        /// The dataset.
        dataset: String,
        /// The store's d_in.
        data: usize,
    },
    /// `sae.d_sae` disagrees with `init_from`.
    #[error(
        "{path}: SAE has d_sae = {sae}, but sae.d_sae = {config}: remove sae.d_sae or make them agree"
    )]
    InitWidth {
        /// The SAE file.
        path: PathBuf,
        /// Its d_sae.
        sae: usize,
        /// The configured d_sae.
        config: usize,
    },
    /// The loss became NaN or infinite.
    /// TopK/BatchTopK keep more features than the dictionary has.
    #[error(
        "{} = {k}: expected at most d_sae = {d_sae} (the dictionary size for this store's d_in)",
        crate::schema::keys::K
    )]
    KTooLarge {
        /// sae.k
        k: usize,
        /// The run's d_sae.
        d_sae: usize,
    },
    /// A Matryoshka width above the dictionary (d_sae from the expansion factor).
    #[error(
        "{} has the width {width}: expected at most d_sae = {d_sae} (the dictionary size for this store's d_in)",
        crate::schema::keys::MATRYOSHKA_WIDTHS
    )]
    WidthsTooLarge {
        /// The largest width.
        width: usize,
        /// The run's d_sae.
        d_sae: usize,
    },
    /// `init_from` holds a dictionary of another kind (an SAE for a transcoder, …).
    #[error(
        "{path}: the dictionary there is a {sae}, but sae.kind = \"{config}\": set sae.kind = \"{sae}\" or start from another one"
    )]
    InitKind {
        /// The init_from path.
        path: PathBuf,
        /// Its kind.
        sae: &'static str,
        /// The configured one.
        config: &'static str,
    },
    /// A transcoder's `init_from` whose output width is not the target store's.
    #[error(
        "{path}: the transcoder there has d_out = {sae}, but the target store {store} has d_in = {data}"
    )]
    InitOutput {
        /// The init_from path.
        path: PathBuf,
        /// Its d_out.
        sae: usize,
        /// The target store's first file.
        store: PathBuf,
        /// The target store's width.
        data: usize,
    },
    /// `init_from` holds an SAE of another architecture.
    #[error(
        "{path}: the SAE there is a {sae} SAE, but sae.architecture = \"{config}\": set sae.architecture = \"{sae}\" or start from another SAE"
    )]
    InitArchitecture {
        /// The init_from path.
        path: PathBuf,
        /// Its architecture.
        sae: &'static str,
        /// The configured one.
        config: &'static str,
    },
    #[error("loss is not finite at step {step}: training stopped; the last good checkpoint is {}", last_good.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (no checkpoint was written before)".into()))]
    NonFiniteLoss {
        /// 0-based step whose loss was not finite.
        step: u64,
        /// The newest checkpoint on disk.
        last_good: Option<PathBuf>,
    },
    /// The run's estimated memory exceeds what the device has free.
    #[error(
        "the run needs about {} ({}), but {device} has {} available: {advice}",
        crate::schema::memory::gib(need.total), need.parts(), crate::schema::memory::gib(*available)
    )]
    OutOfMemory {
        /// The device label.
        device: String,
        /// The estimate.
        need: crate::schema::memory::MemoryEstimate,
        /// Bytes free.
        available: u64,
        /// Which keys to lower.
        advice: String,
    },
    /// The run directory already holds a run.
    #[error(
        "{0}: already holds a run (a checkpoint or a saved SAE): resume it with `jumpscope train --resume {0}` or choose another --out"
    )]
    RunExists(PathBuf),
    /// `--out` names a directory that is not a run's.
    #[error("{dir}: {what}")]
    NotARunDir {
        /// The directory.
        dir: PathBuf,
        /// What it is instead, and what to do.
        what: String,
    },
    /// A change a resume cannot make.
    #[error(transparent)]
    Intent(#[from] crate::train::intent::IntentError),
    /// A store file or pattern in `data.stores` (or `data.target_stores`) that finds nothing.
    #[error("{key}: {path}: no such file{relative_to}")]
    MissingStore {
        /// The key that names it.
        key: &'static crate::schema::keys::Key,
        /// The path or pattern as configured.
        path: String,
        /// Where a relative path was looked for, said when it is relative.
        relative_to: String,
    },
    /// A directory that a run was killed in before it wrote its configuration.
    #[error(
        "{0}: nothing to resume: the run there stopped before it wrote its configuration or a checkpoint; start it with `jumpscope train --config CONFIG --out {0}`"
    )]
    NothingToResume(PathBuf),
    /// The run directory was deleted (or replaced) while the run trained.
    #[error(
        "{0}: the run directory was deleted while the run was training: stopped, since nothing written from now on could be found (its checkpoints went with it)"
    )]
    RunDirGone(PathBuf),
    /// File-system error in the run directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Map an I/O error at `path` into [`TrainError::Io`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
