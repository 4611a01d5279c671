//! The SAE's parameters on a device, their initialisation, the host-side copy used for files,
//! and the inference form that `eval`, `inspect` and validation encode with.
//!
//! Shapes and names follow Gemma Scope / SAELens (docs/training.md, "Shapes and names"): `W_enc [d_in, d_sae]`,
//! `b_enc [d_sae]`, `W_dec [d_sae, d_out]`, `b_dec [d_out]` (`d_out = d_in` but for transcoders,
//! which may add `W_skip [d_in, d_out]`), and the threshold, which is trained as
//! `log θ` or raw θ (used as relu(θ)) per [`ThresholdParam`].

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What the encoder does with the pre-activations z (the `sae.architecture` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// f = z · H(z − θ) with a trained threshold θ per feature (Rajamanoharan et al. 2024).
    #[default]
    JumpRelu,
    /// Each token's k largest ReLU(z), the rest zeroed (Gao et al. 2024).
    TopK,
    /// The k·B largest ReLU(z) of the whole batch of B tokens (Bussmann et al. 2024); inference
    /// uses one global threshold, the mean over steps of the smallest kept activation.
    BatchTopK,
    /// ReLU(z) with the decoder-norm-weighted L1 penalty (Anthropic, April 2024 update).
    Relu,
}

impl Architecture {
    /// Every architecture, JumpReLU first.
    pub const ALL: [Architecture; 4] = [
        Architecture::JumpRelu,
        Architecture::TopK,
        Architecture::BatchTopK,
        Architecture::Relu,
    ];

    /// The name in config files, records and exports.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::JumpRelu => "jumprelu",
            Architecture::TopK => "topk",
            Architecture::BatchTopK => "batchtopk",
            Architecture::Relu => "relu",
        }
    }

    /// Whether a trained per-feature threshold θ exists (JumpReLU only; BatchTopK's global
    /// threshold is estimated, not trained).
    pub fn trains_theta(self) -> bool {
        self == Architecture::JumpRelu
    }

    /// Whether sparsity is structural (k), with no penalty.
    pub fn is_topk(self) -> bool {
        matches!(self, Architecture::TopK | Architecture::BatchTopK)
    }
}

/// What the dictionary reads and what it reconstructs (the `sae.kind` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Reads activations and reconstructs the same activations.
    #[default]
    Sae,
    /// Reads one site (`data.stores`) and reconstructs another (`data.target_stores`): no
    /// pre-encoder bias, `W_dec [d_sae, d_out]`.
    Transcoder,
    /// A transcoder with a trained linear skip, `ŷ = f W_dec + b_dec + x W_skip`,
    /// `W_skip [d_in, d_out]` initialised at zero.
    SkipTranscoder,
}

impl Kind {
    /// Every kind, the SAE first.
    pub const ALL: [Kind; 3] = [Kind::Sae, Kind::Transcoder, Kind::SkipTranscoder];

    /// The name in config files, records and exports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sae => "sae",
            Kind::Transcoder => "transcoder",
            Kind::SkipTranscoder => "skip-transcoder",
        }
    }

    /// Whether it is an SAE (what records leave unsaid).
    pub fn is_sae(&self) -> bool {
        *self == Kind::Sae
    }

    /// Whether it reconstructs a second site (a target store beside the input).
    pub fn has_target(self) -> bool {
        self != Kind::Sae
    }

    /// Whether it trains the linear skip `W_skip`.
    pub fn has_skip(self) -> bool {
        self == Kind::SkipTranscoder
    }
}

/// How the threshold is parametrised for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdParam {
    /// Train t = log θ.
    Log,
    /// Train θ directly, used as relu(θ).
    Raw,
}

/// Parameters in host memory, row-major f32, θ as the raw threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParams {
    /// What they reconstruct (a transcoder's widths may well be equal: MLP in and out).
    pub kind: Kind,
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// Output width: `d_in` for an SAE, the target's width for a transcoder.
    pub d_out: usize,
    /// `[d_in, d_sae]`
    pub w_enc: Vec<f32>,
    /// `[d_sae]`
    pub b_enc: Vec<f32>,
    /// `[d_sae, d_out]`
    pub w_dec: Vec<f32>,
    /// `[d_out]`
    pub b_dec: Vec<f32>,
    /// A skip-transcoder's `W_skip [d_in, d_out]`; `None` for the other kinds.
    pub w_skip: Option<Vec<f32>>,
    /// θ `[d_sae]`, raw (not log).
    pub threshold: Vec<f32>,
    /// Inference keeps each token's k largest activations (a TopK SAE; θ unused); `None`: the
    /// threshold θ decides (JumpReLU, BatchTopK's global θ, ReLU with θ = 0).
    pub topk: Option<usize>,
}

impl HostParams {
    /// Gemma Scope init: He-uniform decoder rows rescaled to unit norm, W_enc = W_decᵀ, zero
    /// biases, θ = `threshold_init`.
    pub fn init(d_in: usize, d_sae: usize, threshold_init: f32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bound = (6.0 / d_in as f64).sqrt() as f32;
        let mut w_dec: Vec<f32> = (0..d_sae * d_in)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        for row in w_dec.chunks_mut(d_in) {
            let n = row
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            row.iter_mut().for_each(|v| *v /= n);
        }
        let mut w_enc = vec![0.0; d_in * d_sae];
        for i in 0..d_sae {
            for j in 0..d_in {
                w_enc[j * d_sae + i] = w_dec[i * d_in + j];
            }
        }
        Self {
            kind: Kind::Sae,
            d_in,
            d_sae,
            d_out: d_in,
            w_enc,
            b_enc: vec![0.0; d_sae],
            w_dec,
            b_dec: vec![0.0; d_in],
            w_skip: None,
            threshold: vec![threshold_init; d_sae],
            topk: None,
        }
    }

    /// The initial parameters of a dictionary of `kind`. An SAE is [`HostParams::init`]. A
    /// transcoder's decoder is drawn the same way over `d_out`, and its encoder independently
    /// (its input is another space, so `W_decᵀ` would mean nothing there): He-uniform columns
    /// over `d_in` rescaled to unit norm, as an SAE's encoder columns are; zero biases, and a
    /// skip-transcoder's `W_skip` at zero.
    pub fn init_kind(
        kind: Kind,
        (d_in, d_out, d_sae): (usize, usize, usize),
        threshold_init: f32,
        seed: u64,
    ) -> Self {
        if kind == Kind::Sae {
            return Self::init(d_in, d_sae, threshold_init, seed);
        }
        let mut p = Self::init(d_out, d_sae, threshold_init, seed);
        let enc = Self::init(d_in, d_sae, threshold_init, seed ^ 0x7a5c_0de5);
        p.kind = kind;
        p.d_in = d_in;
        p.w_enc = enc.w_enc;
        p.w_skip = kind.has_skip().then(|| vec![0.0; d_in * d_out]);
        p
    }

    /// Which kind of dictionary these are.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// The trainable parameters on a device.
#[derive(Debug, Clone)]
pub struct Sae {
    /// `[d_in, d_sae]`
    pub w_enc: Tensor<2>,
    /// `[d_sae]`
    pub b_enc: Tensor<1>,
    /// `[d_sae, d_out]`
    pub w_dec: Tensor<2>,
    /// `[d_out]`
    pub b_dec: Tensor<1>,
    /// A skip-transcoder's `W_skip [d_in, d_out]`.
    pub w_skip: Option<Tensor<2>>,
    /// log θ or raw θ, per `threshold_param`.
    pub theta_param: Tensor<1>,
    /// How `theta_param` maps to θ.
    pub threshold_param: ThresholdParam,
    /// What it reconstructs.
    pub kind: Kind,
}

/// Upload a host vector as a tensor of the given shape.
pub fn upload<const D: usize>(v: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Put a host vector on a device, handing over its buffer.
pub fn upload_owned<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Look at a tensor's values on the host, without copying them where the backend allows (the
/// CPU backend's buffer is borrowed as it is; a copy into a `Vec` would cost fresh pages).
pub fn with_host<const D: usize, R>(t: Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    let data = t.into_data();
    if let Ok(s) = data.as_slice::<f32>() {
        return f(s);
    }
    let v = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("tensor data converted to f32 reads back as f32");
    f(&v)
}

/// Look at a tensor's f32 values in place, leaving the tensor as it is: on the CPU backend its
/// buffer is borrowed (shared with the tensor; [`with_host`] would copy a shared buffer), on
/// others, or for a tensor that is not a plain f32 buffer, a downloaded copy.
pub fn with_host_ref<const D: usize, R>(t: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    if let Ok(p) = t.clone().try_into_primitive::<burn::backend::Flex>()
        && let Some(s) = p.as_slice::<f32>()
    {
        return f(s);
    }
    f(&download(t))
}

/// Read a tensor back to the host as a flat f32 vector.
pub fn download<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    // `convert` makes the elements f32, so reading them as f32 cannot fail: a failure here is a
    // bug, and an empty vector would hide it
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("tensor data converted to f32 reads back as f32")
}

impl Sae {
    /// Put host parameters on a device.
    pub fn from_host(p: &HostParams, threshold_param: ThresholdParam, device: &Device) -> Self {
        let theta: Vec<f32> = match threshold_param {
            ThresholdParam::Log => p.threshold.iter().map(|t| t.ln()).collect(),
            ThresholdParam::Raw => p.threshold.clone(),
        };
        Self {
            w_enc: upload(&p.w_enc, [p.d_in, p.d_sae], device),
            b_enc: upload(&p.b_enc, [p.d_sae], device),
            w_dec: upload(&p.w_dec, [p.d_sae, p.d_out], device),
            b_dec: upload(&p.b_dec, [p.d_out], device),
            w_skip: p
                .w_skip
                .as_ref()
                .map(|w| upload(w, [p.d_in, p.d_out], device)),
            theta_param: upload(&theta, [p.d_sae], device),
            threshold_param,
            kind: p.kind,
        }
    }

    /// Copy the parameters to the host (θ raw).
    pub fn to_host(&self) -> HostParams {
        let [d_in, d_sae] = self.w_enc.dims();
        HostParams {
            kind: self.kind,
            d_in,
            d_sae,
            d_out: self.d_out(),
            w_enc: download(&self.w_enc),
            b_enc: download(&self.b_enc),
            w_dec: download(&self.w_dec),
            b_dec: download(&self.b_dec),
            w_skip: self.w_skip.as_ref().map(download),
            threshold: download(&self.theta()),
            topk: None,
        }
    }

    /// θ = exp(t) for the log parametrisation, relu(θ) for the raw one.
    pub fn theta(&self) -> Tensor<1> {
        match self.threshold_param {
            ThresholdParam::Log => self.theta_param.clone().exp(),
            ThresholdParam::Raw => self.theta_param.clone().clamp_min(0.0),
        }
    }

    /// `(d_in, d_sae)`.
    pub fn dims(&self) -> (usize, usize) {
        let [d_in, d_sae] = self.w_enc.dims();
        (d_in, d_sae)
    }

    /// The output width (`d_in` for an SAE).
    pub fn d_out(&self) -> usize {
        self.b_dec.dims()[0]
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.w_enc.device()
    }
}

/// Each row's k largest entries of the non-negative `r`, the rest zeroed (fewer where a row has
/// fewer than k positive entries). Ties at the k-th value keep every tied entry.
pub fn topk_rows(r: Tensor<2>, k: usize) -> Tensor<2> {
    let [_, m] = r.dims();
    let k = k.clamp(1, m);
    let kth = r.clone().topk(k, 1).narrow(1, k - 1, 1);
    let off = r.clone().lower(kth.expand(r.dims()));
    r.mask_fill(off, 0.0)
}

/// Inference-form SAE on a device: `f = relu(z) H(z − θ)`, or each token's k largest relu(z)
/// for a TopK SAE, with `z = x W_enc + b_enc`.
pub struct InferenceSae {
    w_enc: Tensor<2>,
    b_enc: Tensor<2>,
    w_dec: Tensor<2>,
    b_dec: Tensor<2>,
    w_skip: Option<Tensor<2>>,
    theta: Tensor<2>,
    topk: Option<usize>,
}

impl InferenceSae {
    /// Upload inference-form parameters.
    pub fn new(p: &HostParams, device: &Device) -> Self {
        Self {
            w_enc: upload(&p.w_enc, [p.d_in, p.d_sae], device),
            b_enc: upload(&p.b_enc, [1, p.d_sae], device),
            w_dec: upload(&p.w_dec, [p.d_sae, p.d_out], device),
            b_dec: upload(&p.b_dec, [1, p.d_out], device),
            w_skip: p
                .w_skip
                .as_ref()
                .map(|w| upload(w, [p.d_in, p.d_out], device)),
            theta: upload(&p.threshold, [1, p.d_sae], device),
            topk: p.topk,
        }
    }

    /// Feature activations `[n, d_sae]`.
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, _] = x.dims();
        let [_, m] = self.w_enc.dims();
        let z = x.matmul(self.w_enc.clone()) + self.b_enc.clone();
        if let Some(k) = self.topk {
            return topk_rows(z.clamp_min(0.0), k);
        }
        let off = z
            .clone()
            .lower_equal(self.theta.clone().expand([n, m]))
            .bool_or(z.clone().lower_equal_elem(0.0));
        z.mask_fill(off, 0.0)
    }

    /// Reconstruction from feature activations `f` of inputs `x` (a skip-transcoder adds
    /// `x W_skip`; the other kinds do not read `x`).
    pub fn decode(&self, f: Tensor<2>, x: &Tensor<2>) -> Tensor<2> {
        let out = f.matmul(self.w_dec.clone()) + self.b_dec.clone();
        match &self.w_skip {
            Some(w) => out + x.clone().matmul(w.clone()),
            None => out,
        }
    }
}
