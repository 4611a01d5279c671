//! Saved SAEs: the SAELens directory layout (which is also our export format) and Gemma Scope
//! `params.npz`, and the folding of the input scale and pre-encoder bias in and out
//! (docs/training.md, "Saving for inference").
//!
//! An inference-form SAE works on raw activations: `z = x W_enc + b_enc`, `f = relu(z) H(z − θ)`.
//! A training-form SAE has scale C and (optionally) a pre-encoder bias:
//! `z = (x/C − b_dec) W_enc + b_enc`. Folding: `b_enc' = C b_enc − C (b_dec W_enc)`,
//! `b_dec' = C b_dec`, `θ' = C θ`; unfolding inverts it exactly. A transcoder has a scale for
//! its input and one for its target ([`Scales`]).

use crate::sae::model::{Architecture, HostParams, Kind};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A problem reading or writing an SAE file.
#[derive(Debug, thiserror::Error)]
pub enum SaeIoError {
    /// Not one of the formats we read.
    #[error(
        "{0}: not an SAE: expected a SAELens directory (cfg.json + sae_weights.safetensors), a Gemma Scope params.npz, or a jumpscope checkpoint directory"
    )]
    UnknownFormat(PathBuf),
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A tensor is missing or has the wrong shape or type.
    #[error("{path}: {problem}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        problem: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SaeIoError + '_ {
    move |source| SaeIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, problem: impl Into<String>) -> SaeIoError {
    SaeIoError::Bad {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// The scale factors a run divides its activations by: the input's C and, for a transcoder, the
/// target's (an SAE's output is its input: the same C).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// The input's scale C_x.
    pub input: f32,
    /// The reconstruction's scale C_y (`input` for an SAE).
    pub output: f32,
}

impl Scales {
    /// A run's scales: the input's C, and a transcoder's target's (`None`: an SAE, whose
    /// output is its input).
    pub fn of(input: f64, target: Option<f64>) -> Self {
        Self {
            input: input as f32,
            output: target.unwrap_or(input) as f32,
        }
    }

    /// One scale for input and output (an SAE).
    pub fn same(c: f32) -> Self {
        Self {
            input: c,
            output: c,
        }
    }

    /// `C_y / C_x`, the factor of the input-side weights (exactly 1 for an SAE).
    fn ratio(self) -> f32 {
        if self.input == self.output {
            1.0
        } else {
            self.output / self.input
        }
    }
}

/// Fold the scales and (if `pre_encoder_bias`) the pre-encoder bias into inference form: with
/// f' = C_y f, `W_enc' = (C_y/C_x) W_enc`, `b_enc' = C_y (b_enc − b_dec W_enc)`, `θ' = C_y θ`,
/// `b_dec' = C_y b_dec`, and a skip-transcoder's `W_skip' = (C_y/C_x) W_skip`.
pub fn fold(p: &HostParams, s: Scales, pre_encoder_bias: bool) -> HostParams {
    let mut out = p.clone();
    let (d, m) = (p.d_in, p.d_sae);
    let c = s.output;
    for i in 0..m {
        let shift = if pre_encoder_bias {
            (0..d).map(|j| p.b_dec[j] * p.w_enc[j * m + i]).sum::<f32>()
        } else {
            0.0
        };
        out.b_enc[i] = c * p.b_enc[i] - c * shift;
        out.threshold[i] = c * p.threshold[i];
    }
    out.b_dec.iter_mut().for_each(|v| *v *= c);
    let r = s.ratio();
    if r != 1.0 {
        out.w_enc.iter_mut().for_each(|v| *v *= r);
    }
    if let Some(w) = out.w_skip.as_mut() {
        w.iter_mut().for_each(|v| *v *= r);
    }
    out
}

/// Inverse of [`fold`]: training-form parameters for scales `s` and the given pre-encoder bias.
pub fn unfold(p: &HostParams, s: Scales, pre_encoder_bias: bool) -> HostParams {
    let mut out = p.clone();
    let (d, m) = (p.d_in, p.d_sae);
    let c = s.output;
    let r = s.ratio();
    if r != 1.0 {
        out.w_enc.iter_mut().for_each(|v| *v /= r);
    }
    if let Some(w) = out.w_skip.as_mut() {
        w.iter_mut().for_each(|v| *v /= r);
    }
    out.b_dec.iter_mut().for_each(|v| *v /= c);
    for i in 0..m {
        let shift = if pre_encoder_bias {
            (0..d)
                .map(|j| out.b_dec[j] * out.w_enc[j * m + i])
                .sum::<f32>()
        } else {
            0.0
        };
        out.b_enc[i] = p.b_enc[i] / c + shift;
        out.threshold[i] = p.threshold[i] / c;
    }
    out
}

/// A tensor on the host: row-major f32 values and the shape.
pub type HostTensor = (Vec<f32>, Vec<usize>);

/// Named host tensors, as read from a safetensors file.
pub type TensorMap = HashMap<String, HostTensor>;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write named f32 tensors to a safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &[f32], Vec<usize>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), SaeIoError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, v, _)| f32_bytes(v)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _, shape), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| bad(path, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| bad(path, e.to_string()))
}

/// Read every tensor of a safetensors file as f32 (F32, F16, BF16 and F64 accepted).
pub fn read_safetensors(path: &Path) -> Result<TensorMap, SaeIoError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let v: Vec<f32> = match view.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            other => {
                return Err(bad(
                    path,
                    format!("tensor `{name}` has dtype {other:?}: expected a float type"),
                ));
            }
        };
        out.insert(name, (v, view.shape().to_vec()));
    }
    Ok(out)
}

fn take(
    path: &Path,
    map: &mut TensorMap,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, SaeIoError> {
    let (v, s) = map
        .remove(name)
        .ok_or_else(|| bad(path, format!("tensor `{name}` missing")))?;
    if s != shape {
        return Err(bad(
            path,
            format!("tensor `{name}` has shape {s:?}: expected {shape:?}"),
        ));
    }
    Ok(v)
}

/// Assemble inference-form parameters from the five named tensors, checking shapes (without a
/// `threshold` tensor when `threshold` is false: TopK and standard SAEs have none, θ = 0).
fn params_from_map(
    path: &Path,
    mut map: TensorMap,
    threshold: bool,
    transcoder: bool,
) -> Result<HostParams, SaeIoError> {
    let shape = map
        .get("W_enc")
        .map(|(_, s)| s.clone())
        .ok_or_else(|| bad(path, "tensor `W_enc` missing"))?;
    let [d_in, d_sae] = shape[..] else {
        return Err(bad(
            path,
            format!("tensor `W_enc` has shape {shape:?}: expected [d_in, d_sae]"),
        ));
    };
    // W_dec gives the output width: a transcoder's differs from d_in
    let d_out = map
        .get("W_dec")
        .and_then(|(_, s)| (s.len() == 2 && s[0] == d_sae).then(|| s[1]))
        .unwrap_or(d_in);
    // SAELens keeps a skip-transcoder's W_skip as [d_out, d_in]; ours is its transpose
    let w_skip = match map.contains_key("W_skip") {
        true => Some(transpose(
            &take(path, &mut map, "W_skip", &[d_out, d_in])?,
            d_out,
            d_in,
        )),
        false => None,
    };
    let kind = match (transcoder, &w_skip) {
        (false, _) => Kind::Sae,
        (true, None) => Kind::Transcoder,
        (true, Some(_)) => Kind::SkipTranscoder,
    };
    Ok(HostParams {
        kind,
        d_in,
        d_sae,
        d_out,
        w_enc: take(path, &mut map, "W_enc", &[d_in, d_sae])?,
        b_enc: take(path, &mut map, "b_enc", &[d_sae])?,
        w_dec: take(path, &mut map, "W_dec", &[d_sae, d_out])?,
        b_dec: take(path, &mut map, "b_dec", &[d_out])?,
        w_skip,
        threshold: if threshold {
            take(path, &mut map, "threshold", &[d_sae])?
        } else {
            vec![0.0; d_sae]
        },
        topk: None,
    })
}

/// The transpose of a row-major `[rows, cols]` matrix.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// A saved inference-form SAE with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSae {
    /// Inference-form parameters (raw activations, no pre-encoder bias).
    pub params: HostParams,
    /// "saelens" or "gemma-scope".
    pub format: &'static str,
    /// The architecture it was trained as (SAELens `standard` is `relu`; a JumpReLU file whose
    /// metadata says BatchTopK is `batchtopk`).
    pub architecture: Architecture,
    /// log10 firing frequency per feature, when the file has it.
    pub sparsity: Option<Vec<f32>>,
}

/// Read a SAELens directory (or its `cfg.json`/weights file) or a Gemma Scope `params.npz`.
pub fn load(path: &Path) -> Result<LoadedSae, SaeIoError> {
    if !path.exists() {
        return Err(SaeIoError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let weights = dir.join("sae_weights.safetensors");
    if path.is_dir() && weights.exists()
        || path
            .file_name()
            .is_some_and(|n| n == "sae_weights.safetensors" || n == "cfg.json")
    {
        let cfg_path = dir.join("cfg.json");
        let mut b_dec_on_input = false;
        let mut architecture = Architecture::JumpRelu;
        let mut topk = None;
        // SAELens's transcoder classes and ours: the name says so (d_in may equal d_out)
        let mut transcoder = false;
        if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
            let cfg: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| bad(&cfg_path, format!("invalid JSON: {e}")))?;
            let batchtopk = cfg["metadata"]["architecture"] == "batchtopk";
            architecture = match cfg["architecture"].as_str().unwrap_or("jumprelu") {
                "jumprelu" | "jumprelu_transcoder" | "jumprelu_skip_transcoder" if batchtopk => {
                    Architecture::BatchTopK
                }
                "jumprelu" | "jumprelu_transcoder" | "jumprelu_skip_transcoder" => {
                    Architecture::JumpRelu
                }
                "standard" | "transcoder" | "skip_transcoder" => Architecture::Relu,
                "topk" | TOPK_TRANSCODER | TOPK_SKIP_TRANSCODER => {
                    let k = cfg["k"].as_u64().filter(|&k| k >= 1).ok_or_else(|| {
                        bad(
                            &cfg_path,
                            "architecture \"topk\" without k: expected k >= 1",
                        )
                    })?;
                    topk = Some(k as usize);
                    Architecture::TopK
                }
                other => {
                    return Err(bad(
                        &cfg_path,
                        format!(
                            "architecture = {other:?}: expected \"jumprelu\", \"topk\" or \"standard\" (an SAE), or \"jumprelu_transcoder\", \"transcoder\", \"{TOPK_TRANSCODER}\" or their skip forms"
                        ),
                    ));
                }
            };
            b_dec_on_input = cfg["apply_b_dec_to_input"].as_bool() == Some(true);
            transcoder = cfg["architecture"]
                .as_str()
                .is_some_and(|a| a.ends_with("transcoder"));
        }
        let with_threshold = matches!(
            architecture,
            Architecture::JumpRelu | Architecture::BatchTopK
        );
        let mut p = params_from_map(
            &weights,
            read_safetensors(&weights)?,
            with_threshold,
            transcoder,
        )?;
        p.topk = topk;
        return Ok(LoadedSae {
            architecture,
            // SAELens's pre-encoder bias at inference is folded so that there is one form
            params: if b_dec_on_input {
                fold(&p, Scales::same(1.0), true)
            } else {
                p
            },
            format: "saelens",
            sparsity: read_sparsity(&dir),
        });
    }
    let npz = if path.is_dir() {
        dir.join("params.npz")
    } else {
        path.to_path_buf()
    };
    if npz.extension().is_some_and(|e| e == "npz") && npz.exists() {
        return Ok(LoadedSae {
            params: read_npz(&npz)?,
            format: "gemma-scope",
            architecture: Architecture::JumpRelu,
            sparsity: None,
        });
    }
    Err(SaeIoError::UnknownFormat(path.to_path_buf()))
}

fn read_sparsity(dir: &Path) -> Option<Vec<f32>> {
    let p = dir.join("sparsity.safetensors");
    read_safetensors(&p)
        .ok()?
        .remove("sparsity")
        .map(|(v, _)| v)
}

fn read_npz(path: &Path) -> Result<HostParams, SaeIoError> {
    use ndarray_npy::NpzReader;
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut npz = NpzReader::new(f).map_err(|e| bad(path, format!("not a readable .npz: {e}")))?;
    let mut map = HashMap::new();
    for name in ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"] {
        let arr: ndarray::ArrayD<f32> = npz
            .by_name(name)
            .or_else(|_| npz.by_name(&format!("{name}.npy")))
            .map_err(|e| bad(path, format!("array `{name}`: {e} (expected float32)")))?;
        let shape = arr.shape().to_vec();
        let v: Vec<f32> = arr.iter().copied().collect();
        map.insert(name.to_string(), (v, shape));
    }
    params_from_map(path, map, true, false)
}

/// jumpscope's own `architecture` for a TopK transcoder, which SAELens 6.54 has no class for
/// (docs/training.md, "Transcoders"): SAELens's transcoder layout with `k` in `cfg.json`.
pub const TOPK_TRANSCODER: &str = "jumpscope_topk_transcoder";
/// [`TOPK_TRANSCODER`] with a skip (`W_skip`, stored `[d_out, d_in]` as SAELens stores it).
pub const TOPK_SKIP_TRANSCODER: &str = "jumpscope_topk_skip_transcoder";

/// The `architecture` a saved dictionary of `kind` and `arch` is written with: SAELens's class
/// names (a BatchTopK dictionary as JumpReLU with its global threshold as every feature's θ, as
/// SAELens does), and jumpscope's own for a TopK transcoder.
pub fn saelens_architecture(kind: Kind, arch: Architecture) -> &'static str {
    use Architecture::*;
    match (kind, arch) {
        (Kind::Sae, JumpRelu | BatchTopK) => "jumprelu",
        (Kind::Sae, TopK) => "topk",
        (Kind::Sae, Relu) => "standard",
        (Kind::Transcoder, JumpRelu | BatchTopK) => "jumprelu_transcoder",
        (Kind::Transcoder, TopK) => TOPK_TRANSCODER,
        (Kind::Transcoder, Relu) => "transcoder",
        (Kind::SkipTranscoder, JumpRelu | BatchTopK) => "jumprelu_skip_transcoder",
        (Kind::SkipTranscoder, TopK) => TOPK_SKIP_TRANSCODER,
        (Kind::SkipTranscoder, Relu) => "skip_transcoder",
    }
}

/// Write an inference-form SAE as a SAELens directory: `cfg.json`, `sae_weights.safetensors`,
/// and (when given) `sparsity.safetensors`. Written into a temporary directory beside `dir` and
/// renamed into place. The SAELens architecture follows the kind and `arch`
/// ([`saelens_architecture`]), with `k` for TopK and `d_out` for transcoders;
/// `metadata.architecture` records `arch` itself.
pub fn write_saelens(
    dir: &Path,
    p: &HostParams,
    arch: Architecture,
    sparsity: Option<&[f32]>,
    mut metadata: serde_json::Value,
) -> Result<(), SaeIoError> {
    if let Some(m) = metadata.as_object_mut() {
        m.insert("architecture".into(), json!(arch.name()));
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("sae"),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let kind = p.kind();
    let mut cfg = json!({
        "architecture": saelens_architecture(kind, arch),
        "d_in": p.d_in,
        "d_sae": p.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": false,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
    });
    if let (Architecture::TopK, Some(k)) = (arch, p.topk) {
        cfg["k"] = json!(k);
    }
    if kind.has_target() {
        cfg["d_out"] = json!(p.d_out);
    }
    let cfg_path = tmp.join("cfg.json");
    std::fs::write(
        &cfg_path,
        serde_json::to_string_pretty(&cfg).unwrap_or_default(),
    )
    .map_err(io_err(&cfg_path))?;
    let mut tensors: Vec<(&str, &[f32], Vec<usize>)> = vec![
        ("W_enc", &p.w_enc, vec![p.d_in, p.d_sae]),
        ("W_dec", &p.w_dec, vec![p.d_sae, p.d_out]),
        ("b_enc", &p.b_enc, vec![p.d_sae]),
        ("b_dec", &p.b_dec, vec![p.d_out]),
    ];
    // SAELens keeps W_skip as [d_out, d_in]
    let skip_t = p.w_skip.as_ref().map(|w| transpose(w, p.d_in, p.d_out));
    if let Some(w) = &skip_t {
        tensors.push(("W_skip", w, vec![p.d_out, p.d_in]));
    }
    if matches!(arch, Architecture::JumpRelu | Architecture::BatchTopK) {
        tensors.push(("threshold", &p.threshold, vec![p.d_sae]));
    }
    write_safetensors(&tmp.join("sae_weights.safetensors"), &tensors, None)?;
    if let Some(s) = sparsity {
        write_safetensors(
            &tmp.join("sparsity.safetensors"),
            &[("sparsity", s, vec![p.d_sae])],
            None,
        )?;
    }
    crate::durable::replace_dir(&tmp, dir).map_err(io_err(dir))
}
