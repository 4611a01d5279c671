//! The only place that names compute backends: turns a device name from the config or the
//! command line into a burn [`Device`].
//!
//! Names: `cpu` (burn's pure-Rust flex backend, always built in), and with the `tch` feature
//! `tch-cpu` (LibTorch on the CPU), `cuda` / `cuda:N` (LibTorch on a CUDA GPU); `auto` picks
//! `cuda:0` when the build has LibTorch and it sees a GPU, else `cpu`.

use burn::tensor::Device;

/// How to get the LibTorch devices into a build that lacks them.
const REBUILD: &str = "rebuild with `scripts/dev.sh libtorch` then `scripts/dev.sh build-tch` (README, \"GPU training\")";

/// A device name that this build or machine cannot provide.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not one we know.
    #[error("unknown device `{0}`: expected cpu, tch-cpu, cuda, cuda:N or auto; {1}")]
    Unknown(String, String),
    /// The name needs a backend this binary was built without.
    #[error(
        "device `{0}` needs LibTorch, but this binary was built without the tch feature: {REBUILD}; {1}"
    )]
    NotBuilt(String, String),
    /// LibTorch is built in but sees no such CUDA device.
    #[error("device `{0}`: {1}; {2}")]
    NoCuda(String, String, String),
}

/// The devices this build and machine offer, as a sentence ending the error messages.
pub fn available() -> String {
    let mut names = vec!["cpu".to_string()];
    if cfg!(feature = "tch") {
        names.push("tch-cpu".into());
        let n = cuda_devices();
        names.extend((0..n).map(|i| format!("cuda:{i}")));
    }
    format!("available here: {}, auto", names.join(", "))
}

/// CUDA devices LibTorch can see (0 without the `tch` feature).
pub fn cuda_devices() -> usize {
    #[cfg(feature = "tch")]
    {
        if tch::Cuda::is_available() {
            return tch::Cuda::device_count().max(0) as usize;
        }
    }
    0
}

/// Resolve a device name: `cpu`, `auto`, and with the `tch` feature `tch-cpu`, `cuda`, `cuda:N`.
pub fn resolve(name: &str) -> Result<Device, DeviceError> {
    let cuda_index = match name {
        "cpu" | "flex" => return Ok(Device::flex()),
        "auto" => {
            return Ok(if cuda_devices() > 0 {
                libtorch_cuda(0)
            } else {
                Device::flex()
            });
        }
        "tch-cpu" => None,
        "cuda" => Some(0),
        n => match n.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Some(i),
            _ => return Err(DeviceError::Unknown(name.into(), available())),
        },
    };
    if !cfg!(feature = "tch") {
        return Err(DeviceError::NotBuilt(name.into(), available()));
    }
    match cuda_index {
        None => Ok(libtorch_cpu()),
        Some(i) => {
            let n = cuda_devices();
            if i < n {
                Ok(libtorch_cuda(i))
            } else if n == 0 {
                Err(DeviceError::NoCuda(
                    name.into(),
                    "LibTorch sees no CUDA GPU (no NVIDIA driver, or none visible: check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".into(),
                    available(),
                ))
            } else {
                Err(DeviceError::NoCuda(
                    name.into(),
                    format!("LibTorch sees {n} CUDA GPU(s), numbered from 0"),
                    available(),
                ))
            }
        }
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 deprecates burn-tch, but it is the LibTorch path our users need
fn libtorch_cpu() -> Device {
    crate::sae::sparse_libtorch::silence_csr_warning();
    Device::libtorch()
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn libtorch_cuda(i: usize) -> Device {
    crate::sae::sparse_libtorch::silence_csr_warning();
    Device::libtorch_cuda(i)
}

#[cfg(not(feature = "tch"))]
fn libtorch_cpu() -> Device {
    unreachable!("resolve checks the tch feature first")
}

#[cfg(not(feature = "tch"))]
fn libtorch_cuda(_: usize) -> Device {
    unreachable!("auto picks CUDA only when cuda_devices() > 0, which needs the tch feature")
}

/// A short label for a device name, for logs and the bench output (`auto` says what it chose).
pub fn label(name: &str) -> String {
    match name {
        "flex" => "cpu".to_string(),
        "auto" if cuda_devices() > 0 => "cuda:0".to_string(),
        "auto" => "cpu".to_string(),
        "cuda" => "cuda:0".to_string(),
        other => other.to_string(),
    }
}

/// Whether the fused host-memory kernels (`sae::kernels::host_fused`) apply: the device keeps tensors in host
/// memory (burn's flex backend), and `JUMPSCOPE_NO_FUSED` is not set (it forces the generic
/// tensor-op path, for comparisons).
pub fn fused_host(device: &Device) -> bool {
    *device == Device::flex() && std::env::var_os("JUMPSCOPE_NO_FUSED").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_say_what_is_available() {
        assert!(resolve("cpu").is_ok());
        assert!(resolve("auto").is_ok());
        let e = resolve("gpu").unwrap_err().to_string();
        assert!(
            e.contains("unknown device `gpu`") && e.contains("available here: cpu"),
            "{e}"
        );
        let e = resolve("cuda:x").unwrap_err().to_string();
        assert!(e.contains("unknown device"), "{e}");
        if cfg!(feature = "tch") {
            assert!(resolve("tch-cpu").is_ok());
            if cuda_devices() == 0 {
                let e = resolve("cuda").unwrap_err().to_string();
                assert!(e.contains("sees no CUDA GPU"), "{e}");
                assert_eq!(label("auto"), "cpu");
            }
        } else {
            for n in ["tch-cpu", "cuda", "cuda:1"] {
                let e = resolve(n).unwrap_err().to_string();
                assert!(e.contains("built without the tch feature"), "{e}");
                assert!(e.contains("scripts/dev.sh libtorch"), "{e}");
            }
        }
    }
}
