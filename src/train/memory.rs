//! The memory a run needs, estimated before it starts from its sizes, and what the device has:
//! a run that cannot fit is refused in one line before anything is allocated or written.
//!
//! The estimate counts the largest things a step holds: parameters, Adam's two moments, the
//! gradients, the `[batch, d_sae]` working set of a dense step (the first steps are dense: at
//! θ's initial value about half the features fire), the `[batch, d_in]` tensors around it, and
//! the data pipeline's buffers (prefetched batches, the shuffle block, the held-out rows). It
//! leaves out the backend's allocator slack and the program itself, so it is a floor.

use crate::sae::kernels::Kernels;
pub use crate::schema::memory::{MemoryEstimate, gib};

/// Bytes of one f32.
const F32: u64 = 4;

/// `[batch, d_sae]`-sized buffers a dense step holds at its peak, per kernels: with tensor ops
/// z, z − θ, f, H(z − θ), ∂L/∂f and ∂L/∂z plus two masks (counted as one f32); with the fused
/// host kernels f, ∂L/∂f and ∂L/∂z plus a byte of flags (counted as one f32).
fn working_buffers(kernels: Kernels) -> u64 {
    match kernels {
        Kernels::TensorOps => 7,
        Kernels::HostFused => 4,
    }
}

/// The sizes the estimate needs.
#[derive(Debug, Clone, Copy)]
pub struct RunSizes {
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// A transcoder's output width and whether it has a skip (`None`: an SAE, d_out = d_in):
    /// its decoder and target rows are d_out wide, its data buffers hold the target rows too.
    pub transcoder: Option<(usize, bool)>,
    /// Tokens per step.
    pub batch: usize,
    /// Batches the prefetch thread holds.
    pub prefetch_depth: usize,
    /// Rows of one shuffle block.
    pub shuffle_rows: usize,
    /// Held-out rows kept for evaluation.
    pub eval_rows: usize,
    /// The kernels the run uses.
    pub kernels: Kernels,
}

/// Estimate what a run of these sizes needs.
pub fn estimate(s: RunSizes) -> MemoryEstimate {
    // saturating: sizes no machine has (d_sae = 2^61) come out as u64::MAX bytes, which no
    // device has free, never as a small number wrapped around
    let n = |v: usize| v as u64;
    let mul = |a: u64, b: u64| a.saturating_mul(b);
    let (d, m, b) = (n(s.d_in), n(s.d_sae), n(s.batch));
    // e: the reconstruction's width; rows: the width of a row of data (a transcoder's pair)
    let (e, skip, rows) = match s.transcoder {
        Some((e, skip)) => (n(e), skip, d.saturating_add(n(e))),
        None => (d, false, d),
    };
    let parameters = mul(
        mul(d, m)
            .saturating_add(mul(m, e))
            .saturating_add(mul(2, m))
            .saturating_add(e)
            .saturating_add(if skip { mul(d, e) } else { 0 }),
        F32,
    );
    // x and x_in, the target and the residual
    let working_set = mul(
        mul(mul(working_buffers(s.kernels), b), m)
            .saturating_add(mul(mul(2, b), d))
            .saturating_add(mul(mul(2, b), e)),
        F32,
    );
    // the batcher holds its block and fills the next one
    let data_buffers = mul(
        mul(mul(n(s.prefetch_depth).saturating_add(1), b), rows)
            .saturating_add(mul(mul(2, n(s.shuffle_rows)), rows))
            .saturating_add(mul(n(s.eval_rows), rows)),
        F32,
    );
    let total = mul(4, parameters)
        .saturating_add(working_set)
        .saturating_add(data_buffers);
    MemoryEstimate {
        parameters,
        adam_moments: parameters.saturating_mul(2),
        gradients: parameters,
        working_set,
        data_buffers,
        total,
    }
}

/// Memory the host can give a new allocation now: `MemAvailable` of `/proc/meminfo` (Linux), or
/// `None` where it cannot be read.
pub fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What the estimate was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Available {
    /// Bytes free on the device (host RAM for CPU devices).
    Bytes(u64),
    /// Not checked, and why.
    Unknown(String),
}

/// What `device` has free: host RAM for `cpu` and `tch-cpu`; for CUDA devices nothing,
/// since LibTorch's free-memory query (`cudaMemGetInfo`) is not reachable through `tch`.
pub fn available_on(device: crate::device::DeviceName) -> Available {
    if device.is_cuda() {
        return Available::Unknown(
            "not checked: LibTorch does not tell tch a CUDA device's free memory".into(),
        );
    }
    match host_available() {
        Some(b) => Available::Bytes(b),
        None => Available::Unknown("not checked: /proc/meminfo has no MemAvailable".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_add_up_and_scale_with_the_sizes() {
        let s = RunSizes {
            d_in: 512,
            d_sae: 4096,
            transcoder: None,
            batch: 4096,
            prefetch_depth: 4,
            shuffle_rows: 16384,
            eval_rows: 0,
            kernels: Kernels::TensorOps,
        };
        let e = estimate(s);
        assert_eq!(e.parameters, (2 * 512 * 4096 + 2 * 4096 + 512) * 4);
        assert_eq!(e.adam_moments, 2 * e.parameters);
        assert_eq!(
            e.total,
            e.parameters + e.adam_moments + e.gradients + e.working_set + e.data_buffers
        );
        // the working set grows with the batch, the parameters do not
        let twice = estimate(RunSizes { batch: 8192, ..s });
        assert_eq!(twice.parameters, e.parameters);
        assert_eq!(twice.working_set, 2 * e.working_set);
        // the fused host kernels hold fewer [batch, d_sae] buffers
        assert!(
            estimate(RunSizes {
                kernels: Kernels::HostFused,
                ..s
            })
            .working_set
                < e.working_set
        );
    }

    #[test]
    fn a_transcoder_counts_its_output_width_its_skip_and_its_target_rows() {
        let sae = RunSizes {
            d_in: 512,
            d_sae: 4096,
            transcoder: None,
            batch: 4096,
            prefetch_depth: 4,
            shuffle_rows: 16384,
            eval_rows: 1000,
            kernels: Kernels::HostFused,
        };
        // of equal widths and without a skip, the model is an SAE's; its data twice as wide
        let same = estimate(RunSizes {
            transcoder: Some((512, false)),
            ..sae
        });
        let e = estimate(sae);
        assert_eq!(same.parameters, e.parameters);
        assert_eq!(same.working_set, e.working_set);
        assert_eq!(same.data_buffers, 2 * e.data_buffers);
        let tc = estimate(RunSizes {
            transcoder: Some((768, true)),
            ..sae
        });
        assert_eq!(
            tc.parameters,
            (512 * 4096 + 4096 * 768 + 2 * 4096 + 768 + 512 * 768) * 4
        );
        assert_eq!(
            tc.data_buffers,
            ((5 * 4096 + 2 * 16384 + 1000) * (512 + 768)) * 4
        );
    }

    #[test]
    fn meminfo_is_read_in_kib() {
        let t = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(parse_meminfo(t), Some(2000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }
}
