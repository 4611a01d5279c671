//! The command line (clap): every subcommand and flag, with the help text users see.

use clap::{Args, Parser, Subcommand, ValueEnum};
use jumpscope::device::DeviceName;
use std::path::PathBuf;

/// The one help text of `--device` on every subcommand that takes it.
const DEVICE_HELP: &str = "Device: cpu (the default, except for selftest: auto), auto (the first GPU if there is one, else cpu), and in a build with the tch feature tch-cpu, cuda, cuda:N";

/// Train and inspect JumpReLU sparse autoencoders on language-model activations.
#[derive(Debug, Parser)]
#[command(name = "jumpscope", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a JumpReLU (or TopK, BatchTopK, ReLU) SAE on activations from HDF5 stores or a SAELens
    /// activation cache.
    ///
    /// Writes RUN_DIR/config.toml (the effective configuration), RUN_DIR/metrics.jsonl,
    /// RUN_DIR/checkpoints/step-N/ and, at the end, RUN_DIR/sae/ (SAELens layout).
    /// Ctrl-C or SIGTERM writes a checkpoint and exits with code 130.
    Train(TrainArgs),
    /// Train many SAEs side by side from one data stream: a run config plus a [sweep] table.
    ///
    /// The [sweep] table varies keys as a grid (`vary = { "train.sparsity_coefficient" =
    /// [1e-3, 3e-3], "sae.architecture" = ["jumprelu", "topk"] }`) or lists members
    /// ([[sweep.member]] with a name and overrides); `sweep.devices` places them round-robin.
    /// The store is read once for all members. Writes OUT/sweep.toml, OUT/sweep.jsonl and a
    /// complete run directory per member (OUT/<member>/), which watch, eval, inspect and
    /// `train --resume` take as they are. Ctrl-C or SIGTERM checkpoints every member and exits
    /// with code 130; `--resume OUT` continues.
    Sweep(SweepArgs),
    /// SAEs side by side: architecture, d_sae, key hyperparameters, L0, MSE, FVU, dead, and
    /// whether each is on the L0–FVU frontier.
    ///
    /// Takes runs, sweeps (their members) and saved SAEs. With --store every SAE is evaluated on
    /// the same rows (the fair comparison); without it each run's last held-out evaluation is
    /// used (else its last training report), and the table says which. On a terminal it shows
    /// the table and the frontier chart; --json prints the table.
    Compare(CompareArgs),
    /// Attach the live screen to a run another process is training (e.g. under nohup).
    ///
    /// Follows RUN_DIR/metrics.jsonl as it grows; hyperparameter changes made here are written
    /// to RUN_DIR/config.toml, which the training process watches and applies at its next step.
    /// Leaving (q) does not stop the run.
    Watch(WatchArgs),
    /// What a run's log says about its health: every warning with its steps and hint, and the
    /// rules that were checked and never fired (see docs/training.md, "Training health").
    ///
    /// Reads RUN_DIR/metrics.jsonl of a finished or running run; for a directory of runs (a
    /// sweep), one block per run. Exits 0 whatever it finds.
    Doctor(DoctorArgs),
    /// What each feature of a saved SAE does on a store: density, activation histogram, top
    /// activations with their tokens.
    ///
    /// One streaming pass over the store (memory bounded whatever its size). SAE: a SAELens
    /// directory, a Gemma Scope params.npz, or a jumpscope run's sae/ directory. A report saved
    /// with --out reopens instantly: `jumpscope inspect REPORT.json`.
    Inspect(InspectArgs),
    /// Evaluate a saved SAE on a store: L0, MSE, FVU, explained variance, dead features.
    Eval(EvalArgs),
    /// Splice SAEs into the language model they were trained on: ΔLM loss, CE recovered, KL.
    ///
    /// For each SAE, the model's next-token cross-entropy without it (ce_clean), with its
    /// reconstruction in place of the site's activation at every position (ce_spliced), and with
    /// the site zero-ablated (ce_ablated); delta_lm_loss = ce_spliced - ce_clean, ce_recovered =
    /// (ce_ablated - ce_spliced) / (ce_ablated - ce_clean), kl = KL(clean || spliced), and the
    /// SAE's l0 and fvu on the same activations. The model runs in a Python companion (torch +
    /// transformers) the binary carries. A run directory means its sae/ (or its newest
    /// checkpoint while it trains), and the result is also appended to its metrics.jsonl.
    /// See docs/lm-eval.md.
    LmEval(LmEvalArgs),
    /// Write a checkpoint as a SAELens directory with the input scale and pre-encoder bias folded in.
    Export(ExportArgs),
    /// Activation-store utilities.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Time full training steps on random data and print tokens/s.
    Bench(BenchArgs),
    /// Check this build on a device before training on it: the golden cases, 30 steps against
    /// the CPU, and the bench at two sizes; a pass/fail table, exit code 1 on any mismatch.
    ///
    /// Run it first on a new GPU box (`jumpscope selftest --device cuda`). It takes about a
    /// quarter of a minute on a 2-core CPU.
    Selftest(SelftestArgs),
}

/// `jumpscope train`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "resume"])))]
pub struct TrainArgs {
    /// The run's TOML configuration (every key: docs/configuration.md).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. `--set train.lr=1e-4` (repeatable). With --resume: live keys,
    /// and `train.steps` or `train.tokens` to train a run further; each is logged as an edit.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run directory (overrides run.out).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its newest checkpoint. Live keys edited in its
    /// config.toml while it was stopped apply (and are logged); another change is refused.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Progress bar and metrics log only (no TUI).
    #[arg(long)]
    pub headless: bool,
    /// Device: cpu (the default, except for selftest: auto), auto (the first GPU if there is one,
    /// else cpu), and in a build with the tch feature tch-cpu, cuda, cuda:N. Overrides run.device.
    #[arg(long)]
    pub device: Option<DeviceName>,
    /// Screen options.
    #[command(flatten)]
    pub look: LookArgs,
}

/// `jumpscope sweep`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "resume"])))]
pub struct SweepArgs {
    /// The sweep's TOML: a run configuration plus a [sweep] table (see docs/sweeps.md).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override a config key for every member, e.g. `--set train.steps=2000` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    /// The sweep's directory (overrides run.out); members go to OUT/<member>/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the sweep in OUT from its last checkpoint of all members.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["config", "sets", "out"])]
    pub resume: Option<PathBuf>,
    /// One line per member report and the member table at the end (no screen).
    #[arg(long)]
    pub headless: bool,
    /// Screen options.
    #[command(flatten)]
    pub look: LookArgs,
}

/// `jumpscope compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run directories, sweep directories and saved SAEs (SAELens directories, params.npz).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Evaluate every SAE on this store (HDF5 files or glob patterns, or a SAELens cache).
    #[arg(long, num_args = 1..)]
    pub store: Vec<PathBuf>,
    /// Dataset inside the store (for a SAELens cache, the hook column).
    #[arg(long)]
    pub dataset: Option<String>,
    /// With --store: a transcoder's target store, rows paired with --store's. Every input is then
    /// measured on the target: a transcoder reads --store and reconstructs it, an SAE reads and
    /// reconstructs it (an SAE on the site a transcoder writes).
    #[arg(long, num_args = 1.., requires = "store")]
    pub target_store: Vec<PathBuf>,
    /// Dataset inside the target store (default: as --dataset).
    #[arg(long, requires = "target_store")]
    pub target_dataset: Option<String>,
    /// Tokens per batch when evaluating on a store.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// With --store: evaluate each run only on the rows it held out of training (its last
    /// `data.eval_tokens` rows of the store), since training rows flatter a run.
    #[arg(long, requires = "store")]
    pub held_out: bool,
    #[arg(long, default_value = "cpu", help = DEVICE_HELP)]
    pub device: DeviceName,
    /// Splice every SAE into this model (a local directory or a Hugging Face id) on the same
    /// tokens: ΔLM loss, CE recovered, KL, and L0 and FVU at the site (see `lm-eval`). Without
    /// it, runs show their newest lm-eval.
    #[arg(long, conflicts_with = "store", requires = "layer")]
    pub model: Option<String>,
    /// With --model: the layer the SAEs read.
    #[arg(long, requires = "model")]
    pub layer: Option<usize>,
    /// With --model: the site (resid_post, resid_pre, mlp_in, mlp_out, attn_out).
    #[arg(long, default_value = "resid_post")]
    pub site: String,
    /// With --model: transcoders' target site (their output replaces it; every input must then
    /// be a transcoder).
    #[arg(long, requires = "model")]
    pub target_site: Option<String>,
    /// With --model: token ids, an integer .npy [n_seq, seq_len].
    #[arg(
        long,
        value_name = "IDS.npy",
        requires = "model",
        conflicts_with = "texts"
    )]
    pub token_ids: Option<PathBuf>,
    /// With --model: text, tokenized as harvest.py does.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub texts: Option<PathBuf>,
    /// With --texts: tokens to evaluate on.
    #[arg(long, default_value_t = 65_536)]
    pub tokens: u64,
    /// With --texts: tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// With --model: torch's device for the model (cpu, cuda, cuda:N).
    #[arg(long, default_value = "cpu")]
    pub model_device: String,
    /// With --model: the Python that runs the model companion (else JUMPSCOPE_PYTHON, else
    /// python3).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Print the table as JSON (one array) instead of showing it.
    #[arg(long)]
    pub json: bool,
    /// Screen options.
    #[command(flatten)]
    pub look: LookArgs,
}

/// How the screens look (train and watch).
#[derive(Debug, Args)]
pub struct LookArgs {
    /// Colour theme: dark (default), light, high-contrast, mono, or a theme file (.toml; keys
    /// it leaves out come from dark). NO_COLOR turns colour off whatever the theme.
    #[arg(long, value_name = "NAME|PATH")]
    pub theme: Option<String>,
    /// Chart points: braille (default), dot or block, for fonts without braille.
    #[arg(long, value_enum)]
    pub marker: Option<MarkerArg>,
}

/// Chart marker.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarkerArg {
    /// Braille dots (2×4 per cell; needs a font with braille).
    Braille,
    /// One dot per cell.
    Dot,
    /// Full blocks.
    Block,
}

/// `jumpscope watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The run directory (`jumpscope train` wrote config.toml and metrics.jsonl into it).
    pub run_dir: PathBuf,
    /// Screen options.
    #[command(flatten)]
    pub look: LookArgs,
}

/// `jumpscope doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A run directory (or a directory of run directories).
    pub run_dir: PathBuf,
    /// Print one JSON array, an object per run.
    #[arg(long)]
    pub json: bool,
}

/// `jumpscope eval`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A SAELens directory, a Gemma Scope params.npz, a jumpscope run (its sae/, or its newest
    /// checkpoint while it trains), or a checkpoint directory.
    pub sae: PathBuf,
    /// HDF5 store(s) of raw activations (glob patterns allowed, e.g. 'acts/*.h5').
    #[arg(long, required = true, num_args = 1..)]
    pub store: Vec<PathBuf>,
    /// Dataset inside the store (default: `activations`, else the only float dataset); for a
    /// SAELens cache, the hook column (default: the only one).
    #[arg(long)]
    pub dataset: Option<String>,
    /// A transcoder's target store: the site it reconstructs, rows paired with --store's
    /// (required for a transcoder, refused for an SAE).
    #[arg(long, num_args = 1..)]
    pub target_store: Vec<PathBuf>,
    /// Dataset inside the target store (default: as --dataset).
    #[arg(long)]
    pub target_dataset: Option<String>,
    /// Tokens per batch.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    #[arg(long, default_value = "cpu", help = DEVICE_HELP)]
    pub device: DeviceName,
    /// Print one JSON object: n_tokens, l0, mse_raw, mse_norm, fvu, explained_variance,
    /// silent, silent_fraction (of the target, for a transcoder).
    #[arg(long)]
    pub json: bool,
    /// Evaluate only on the rows the SAE's run held out of training (its last
    /// `data.eval_tokens` rows of the store); the SAE must be a run's (or a checkpoint).
    #[arg(long)]
    pub held_out: bool,
}

/// `jumpscope lm-eval`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("tokens_from").required(true).args(["token_ids", "texts"])))]
pub struct LmEvalArgs {
    /// SAEs: SAELens directories, Gemma Scope params.npz, run directories (their sae/, or their
    /// newest checkpoint while they train), sweeps (every member).
    #[arg(required = true, value_name = "SAE_OR_RUN")]
    pub saes: Vec<PathBuf>,
    /// The model: a local directory or a Hugging Face id.
    #[arg(long)]
    pub model: String,
    /// The layer the SAEs read (TransformerLens numbering, as harvest.py's --layers).
    #[arg(long)]
    pub layer: usize,
    /// The site in that layer: resid_post, resid_pre, mlp_in (the MLP's input, after its norm),
    /// mlp_out or attn_out.
    #[arg(long, default_value = "resid_post")]
    pub site: String,
    /// Transcoders: the site their output replaces (mlp_out for an MLP's transcoder reading
    /// mlp_in); every SAE given must then be a transcoder, which reads --site.
    #[arg(long)]
    pub target_site: Option<String>,
    /// Token ids to evaluate on: an integer .npy array [n_seq, seq_len], used exactly as given.
    #[arg(long, value_name = "IDS.npy")]
    pub token_ids: Option<PathBuf>,
    /// Text to evaluate on (.txt one document per line, .jsonl, or a directory of them),
    /// tokenized as harvest.py does (documents joined with EOS, windows starting with BOS).
    #[arg(long, value_name = "FILE")]
    pub texts: Option<PathBuf>,
    /// With --texts: tokens to evaluate on (0: all the text gives).
    #[arg(long, default_value_t = 65_536, requires = "texts")]
    pub tokens: u64,
    /// With --texts: tokens per sequence.
    #[arg(long, default_value_t = 128, requires = "texts")]
    pub seq_len: usize,
    /// torch's device for the model: cpu, cuda, cuda:N (as `compare --model-device`).
    #[arg(long = "model-device", default_value = "cpu")]
    pub device: String,
    /// The model's dtype for the forward passes: float32, float16, bfloat16.
    #[arg(long, default_value = "float32")]
    pub dtype: String,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// The Python that runs the companion (else JUMPSCOPE_PYTHON, else python3); it needs
    /// torch and transformers.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Do not append the result to the runs' metrics.jsonl.
    #[arg(long)]
    pub no_record: bool,
    /// Print a JSON list, one object per SAE: sae, ce_clean, ce_spliced, ce_ablated,
    /// delta_lm_loss, ce_recovered, kl, l0, fvu, tokens.
    #[arg(long)]
    pub json: bool,
}

/// `jumpscope inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The SAE (SAELens directory, Gemma Scope params.npz, a run: its sae/ or its newest
    /// checkpoint, a checkpoint directory), or a saved report.
    pub sae: PathBuf,
    /// HDF5 store(s) of raw activations (glob patterns allowed), or a SAELens activation cache
    /// directory; not with a saved report.
    #[arg(long, num_args = 1..)]
    pub store: Vec<PathBuf>,
    /// Dataset inside the store (default: `activations`, else the only float dataset); for a
    /// SAELens cache, the hook column (default: the only one).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Token strings for the contexts, for stores with token ids but no `vocab` (SAELens caches):
    /// the model's tokenizer.json, a vocab.json (token → id) or a vocab.txt (one per line).
    #[arg(long, value_name = "FILE")]
    pub vocab: Option<PathBuf>,
    /// A transcoder's target store (the site it reconstructs, rows paired with --store's): the
    /// report's reconstruction numbers are of it; features fire on --store's tokens as always.
    #[arg(long, num_args = 1..)]
    pub target_store: Vec<PathBuf>,
    /// Dataset inside the target store (default: as --dataset).
    #[arg(long)]
    pub target_dataset: Option<String>,
    /// Tokens encoded at a time (fewer for very wide SAEs: one batch's activations stay
    /// under 256 MiB).
    #[arg(long, default_value_t = 2048)]
    pub batch: usize,
    #[arg(long, default_value = "cpu", help = DEVICE_HELP)]
    pub device: DeviceName,
    /// Top activations kept per feature.
    #[arg(long, default_value_t = 20)]
    pub top_k: usize,
    /// Bins of each feature's activation histogram (a power of two, 2 to 1024).
    #[arg(long, default_value_t = 32)]
    pub bins: usize,
    /// Tokens of context shown on each side of a top activation (needs token ids in the store).
    #[arg(long, default_value_t = 8)]
    pub context: usize,
    /// Density from which a feature counts as dense.
    #[arg(long, default_value_t = 0.1)]
    pub dense: f64,
    /// Print the report as JSON (schema in docs/commands.md, "jumpscope inspect") instead of showing it.
    #[arg(long)]
    pub json: bool,
    /// Only this feature (with --json: its object alone).
    #[arg(long, value_name = "K")]
    pub feature: Option<usize>,
    /// Save the report here (JSON), to reopen later with `jumpscope inspect FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only encode the store and print the time (the baseline the pass is measured against).
    #[arg(long)]
    pub encode_only: bool,
    /// Screen options.
    #[command(flatten)]
    pub look: LookArgs,
}

/// `jumpscope export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint directory (RUN_DIR/checkpoints/step-N) or a run directory (its newest).
    pub checkpoint: PathBuf,
    /// Output directory (SAELens layout): new, or empty; never the run itself, inside it, or a
    /// directory holding it.
    pub out_dir: PathBuf,
    /// Replace an existing saved SAE at the destination (nothing else is ever replaced).
    #[arg(long)]
    pub force: bool,
}

/// `jumpscope store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write a synthetic store with known features (true directions saved beside the data).
    Synth(SynthArgs),
    /// Describe stores: dataset, shape, dtype, chunking, compression, sizes, token ids, attributes.
    Info(InfoArgs),
    /// Time one epoch of the training data path (read, shuffle, batch, prefetch) and print rows/s.
    Bench(StoreBenchArgs),
}

/// `jumpscope store bench`
#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// HDF5 files or glob patterns, read as one store; or one SAELens activation cache directory.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Dataset inside the files (default: `activations`, else the only float dataset); for a
    /// SAELens cache directory, the hook column (default: the only one).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Rows per batch.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Read in file order instead of shuffled.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Passes over the store (epochs); the rate is over all of them, start-up included.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `jumpscope store info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// HDF5 files or glob patterns, read as one store; or one SAELens activation cache directory.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Dataset inside the files (default: `activations`, else the only float dataset); for a
    /// SAELens cache directory, the hook column (default: the only one).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Also read every row: NaN/Inf row counts, mean ‖x‖, read throughput.
    #[arg(long)]
    pub scan: bool,
    /// Print one JSON object (keys include `n_tokens` and `d_in`).
    #[arg(long)]
    pub json: bool,
}

/// Element type of a written store.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    /// float32
    F32,
    /// float16
    F16,
    /// float64
    F64,
    /// bfloat16 (uint16 bits with the attribute dtype = "bfloat16")
    Bf16,
}

/// `jumpscope store synth`
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The HDF5 file to write.
    pub out: PathBuf,
    /// Activation width.
    #[arg(long, default_value_t = 64)]
    pub d_in: usize,
    /// Number of ground-truth features.
    #[arg(long, default_value_t = 256)]
    pub features: usize,
    /// Expected number of active features per token.
    #[arg(long, default_value_t = 5.0)]
    pub mean_active: f64,
    /// Tokens (rows) to write.
    #[arg(long, default_value_t = 100_000)]
    pub tokens: usize,
    /// Standard deviation of Gaussian noise added per dimension.
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Element type of the activations dataset.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Also write a transcoder's target store here: rows paired with OUT's, in which each active
    /// feature writes along its own direction of --d-out dimensions (true output directions in
    /// `true_out_features`).
    #[arg(long, value_name = "TARGET_H5")]
    pub target_out: Option<PathBuf>,
    /// Width of the target store's rows (default: --d-in).
    #[arg(long, requires = "target_out")]
    pub d_out: Option<usize>,
}

/// `jumpscope bench --step`.
pub use jumpscope::bench::StepPath;

/// `jumpscope bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Activation width.
    #[arg(long, default_value_t = 512)]
    pub d_in: usize,
    /// Dictionary size.
    #[arg(long, default_value_t = 4096)]
    pub d_sae: usize,
    /// Tokens per step.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Start each θ_j at the (1 − N/d_sae) quantile of feature j's pre-activations on the first
    /// batch (floored at 1e-6), so that about N features fire per token as in a trained SAE
    /// (the PyTorch reference's `bench --l0` uses the same rule). Without it θ = 1e-3, where
    /// about half the features fire.
    #[arg(long, value_name = "N")]
    pub l0: Option<f64>,
    /// Which form of the step after the encoder product: `auto` chooses per step from the
    /// measured density, as training does; `sparse` and `dense` force one (to compare them).
    #[arg(long, value_enum, default_value_t = StepPath::Auto)]
    pub step: StepPath,
    #[arg(long, default_value = "cpu", help = DEVICE_HELP)]
    pub device: DeviceName,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `jumpscope selftest`
#[derive(Debug, Args)]
pub struct SelftestArgs {
    // the one command whose default is `auto`: it is run first on a new GPU box, to test it
    #[arg(long, default_value = "auto", help = DEVICE_HELP)]
    pub device: DeviceName,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Skip the timings (the checks alone take a few seconds).
    #[arg(long)]
    pub no_bench: bool,
    /// Debug hook for selftest's own tests: add 1e-3 to this gradient in every step on the
    /// tested device, which must make the checks fail.
    #[arg(long, value_enum, hide = true)]
    pub perturb_gradient: Option<jumpscope::sae::perturb::GradName>,
}
