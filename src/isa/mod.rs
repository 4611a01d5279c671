//! Which x86 instruction set each of jumpscope's CPU kernels runs with: the CPU's best, found
//! once at start, lowered on request by `JUMPSCOPE_ISA`, and listed in one table ([`kernels`])
//! that `selftest` and `bench` print. Also the entry points of the hand-written loops, each
//! dispatching to its `avx512` or `avx2` form or to the portable one.
//!
//! Why at run time: the release build targets baseline x86-64 so that one binary runs on any
//! x86-64 CPU, which limits what the compiler emits to 4-wide SSE2 without fused multiply-add.
//! The loops here are compiled again for AVX2 + FMA + F16C (every x86 server of the last
//! decade) and for AVX-512 (Intel since Skylake-SP, AMD since Zen 4), and the CPU picks.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

pub use portable::all_finite;
use serde::Serialize;
use std::sync::OnceLock;

/// The environment variable that lowers the instruction set of jumpscope's own kernels.
pub const ENV: &str = "JUMPSCOPE_ISA";

/// An instruction-set level, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// x86-64 as the binary is built for (SSE2), or any other architecture.
    Baseline,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// AVX-512 F, BW, DQ and VL (x86-64-v4), with the AVX2 level's extensions.
    Avx512,
}

impl Isa {
    /// The name `JUMPSCOPE_ISA` takes and the tables print.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// What the level means on x86-64, for the tables.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Baseline => "SSE2, 4 lanes",
            Isa::Avx2 => "AVX2+FMA, 8 lanes",
            Isa::Avx512 => "AVX-512, 16 lanes",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .find(|i| i.name() == s)
    }
}

/// A `JUMPSCOPE_ISA` that cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IsaError {
    /// Not one of the names.
    #[error(
        "{ENV}={0:?}: expected auto, avx512, avx2 or baseline (the instruction set of jumpscope's own CPU kernels)"
    )]
    Unknown(String),
    /// Above what the CPU has.
    #[error("{ENV}={asked}: this CPU has at most {has}; the variable can only lower the level")]
    AboveCpu {
        /// What was asked for.
        asked: &'static str,
        /// The CPU's best.
        has: &'static str,
    },
}

/// The best level this CPU has (asked once; std caches the answer).
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The level `value` of `JUMPSCOPE_ISA` asks for on a CPU whose best is `cpu` (unset or `auto`:
/// the CPU's best).
pub fn resolve(value: Option<&str>, cpu: Isa) -> Result<Isa, IsaError> {
    let v = match value.map(str::trim) {
        None | Some("") | Some("auto") => return Ok(cpu),
        Some(v) => v,
    };
    let asked = Isa::parse(&v.to_ascii_lowercase()).ok_or_else(|| IsaError::Unknown(v.into()))?;
    if asked > cpu {
        return Err(IsaError::AboveCpu {
            asked: asked.name(),
            has: cpu.name(),
        });
    }
    Ok(asked)
}

/// The check `main` makes before any command, so that a bad `JUMPSCOPE_ISA` is one line and
/// exit code 2 rather than a silent fallback.
pub fn check_env() -> Result<Isa, IsaError> {
    resolve(std::env::var(ENV).ok().as_deref(), detected())
}

/// The level jumpscope's own kernels run at in this process: [`check_env`]'s answer, read once
/// (an unusable variable, which `main` refuses before this is asked, falls back to the CPU's
/// best).
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| check_env().unwrap_or_else(|_| detected()))
}

/// The level of the `gemm` crate's matrix products (every product of the CPU backend: the
/// encoder's, and the dense step's): it picks its own kernels from the CPU, avx512f first (built
/// with its `x86-v4` feature), whatever `JUMPSCOPE_ISA` says; this repeats its rule.
pub fn gemm() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// One row of the kernel table.
#[derive(Debug, Clone, Serialize)]
pub struct KernelIsa {
    /// The kernel.
    pub kernel: &'static str,
    /// The level it runs at in this process.
    pub isa: Isa,
    /// Where it lives.
    pub code: &'static str,
}

/// Every CPU kernel of the flex backend's step and data path, and the level it runs at here.
pub fn kernels() -> Vec<KernelIsa> {
    let own = active();
    let row = |kernel, isa, code| KernelIsa { kernel, isa, code };
    vec![
        row(
            "matrix products (encoder, dense step)",
            gemm(),
            "gemm 0.19, its own dispatch",
        ),
        row("sparse step rows (axpy, dot)", own, "isa::{avx512,avx2}"),
        row(
            "encode and backward passes",
            own,
            "sae::kernels::host_fused via isa::vectorised",
        ),
        row("Adam on host", own, "train::adam_host via isa::vectorised"),
        row("f16/bf16 store decoding", own, "isa::{avx512,avx2}"),
    ]
}

/// One line for reports: the level of the products and of our own kernels, and why.
pub fn summary() -> String {
    let own = active();
    let why = match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => format!("{ENV}={v}"),
        _ => "the CPU's best".to_string(),
    };
    format!(
        "matrix products {} (gemm), own kernels {} ({why}; CPU has {})",
        gemm().name(),
        own.name(),
        detected().name()
    )
}

/// Run `f` compiled for the active level: the same source vectorised 16, 8 or 4 lanes wide.
/// For elementwise loops only, whose results do not depend on the width: Rust never fuses a
/// multiply and an add by itself, nor reorders a sum, so the three forms give the same bits.
/// Put the call inside each parallel task (the task's closure is compiled for the level; what
/// rayon calls from its own code is not), and mark the loop's helpers `#[inline(always)]`.
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    on(active(), f)
}

/// [`vectorised`] at a given level (a test seam: the tests compare every level the CPU has).
#[inline(always)]
pub fn vectorised_at<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    on(isa.min(detected()), f)
}

/// [`vectorised`] at a level the CPU has.
#[inline(always)]
fn on<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the CPU has the level (`detected`)
        Isa::Avx512 => return unsafe { avx512::run(f) },
        Isa::Avx2 => return unsafe { avx2::run(f) },
        Isa::Baseline => {}
    }
    let _ = isa;
    f()
}

/// `acc += a · v`.
#[inline]
pub fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    axpy_on(active(), acc, a, v)
}

/// [`axpy`] at a given level (capped at the CPU's).
pub fn axpy_at(isa: Isa, acc: &mut [f32], a: f32, v: &[f32]) {
    axpy_on(isa.min(detected()), acc, a, v)
}

#[inline(always)]
fn axpy_on(isa: Isa, acc: &mut [f32], a: f32, v: &[f32]) {
    let n = acc.len().min(v.len());
    let (acc, v) = (&mut acc[..n], &v[..n]);
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the CPU has the level; both slices hold n values
        Isa::Avx512 => return unsafe { avx512::axpy(acc, a, v) },
        Isa::Avx2 => return unsafe { avx2::axpy(acc, a, v) },
        Isa::Baseline => {}
    }
    let _ = isa;
    portable::axpy(acc, a, v)
}

/// `u · v`.
#[inline]
pub fn dot(u: &[f32], v: &[f32]) -> f32 {
    dot_on(active(), u, v)
}

/// [`dot`] at a given level (capped at the CPU's). The sum's order depends on the level's
/// width, so the levels agree to rounding, not to the bit.
pub fn dot_at(isa: Isa, u: &[f32], v: &[f32]) -> f32 {
    dot_on(isa.min(detected()), u, v)
}

#[inline(always)]
fn dot_on(isa: Isa, u: &[f32], v: &[f32]) -> f32 {
    let n = u.len().min(v.len());
    let (u, v) = (&u[..n], &v[..n]);
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the CPU has the level; both slices hold n values
        Isa::Avx512 => return unsafe { avx512::dot(u, v) },
        Isa::Avx2 => return unsafe { avx2::dot(u, v) },
        Isa::Baseline => {}
    }
    let _ = isa;
    portable::dot(u, v)
}

/// Little-endian f16 `bytes` to f32 times `scale` into `out` (`out.len()` values, at most
/// `bytes.len() / 2`); returns whether every value is finite.
pub fn f16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    f16_on(active(), bytes, scale, out)
}

/// [`f16_to_f32`] at a given level (capped at the CPU's).
pub fn f16_to_f32_at(isa: Isa, bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    f16_on(isa.min(detected()), bytes, scale, out)
}

#[inline(always)]
fn f16_on(isa: Isa, bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    let n = out.len().min(bytes.len() / 2);
    let (bytes, out) = (&bytes[..2 * n], &mut out[..n]);
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the CPU has the level; bytes holds 2n bytes for n outputs
        Isa::Avx512 => return unsafe { avx512::f16_to_f32(bytes, scale, out) },
        Isa::Avx2 => return unsafe { avx2::f16_to_f32(bytes, scale, out) },
        Isa::Baseline => {}
    }
    let _ = isa;
    portable::f16_to_f32(bytes, scale, out)
}

/// Little-endian bf16 `bytes` to f32 times `scale` into `out`, as [`f16_to_f32`].
pub fn bf16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    bf16_on(active(), bytes, scale, out)
}

/// [`bf16_to_f32`] at a given level (capped at the CPU's).
pub fn bf16_to_f32_at(isa: Isa, bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    bf16_on(isa.min(detected()), bytes, scale, out)
}

#[inline(always)]
fn bf16_on(isa: Isa, bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    let n = out.len().min(bytes.len() / 2);
    let (bytes, out) = (&bytes[..2 * n], &mut out[..n]);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: the CPU has AVX-512; bytes holds 2n bytes for n outputs
        return unsafe { avx512::bf16_to_f32(bytes, scale, out) };
    }
    // a shift and a multiply: the compiler's own vectorisation is as good at 8 lanes
    on(isa, || portable::bf16_to_f32(bytes, scale, out))
}

#[cfg(test)]
mod tests;
