//! The only place that names compute backends: turns a device name from the config or the
//! command line into a burn [`Device`].
//!
//! Names: `cpu` (burn's pure-Rust flex backend, always built in), and with the `tch` feature
//! `tch-cpu` (LibTorch on the CPU), `cuda` / `cuda:N` (LibTorch on a CUDA GPU); `auto` picks
//! `cuda:0` when the build has LibTorch and it sees a GPU, else `cpu`.

use burn::tensor::Device;

/// How to get the LibTorch devices into a build that lacks them.
const REBUILD: &str =
    "rebuild with `scripts/dev.sh libtorch` then `scripts/dev.sh build-tch` (docs/gpu.md)";

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

/// A device as the configuration and the command line name it, parsed once: `cpu` (also
/// `flex`), `auto`, `tch-cpu`, `cuda` (= `cuda:0`) or `cuda:N`. Whether this build and machine
/// can provide it is [`DeviceName::resolve`]'s question.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceName {
    /// burn's flex backend on the CPU.
    Cpu,
    /// `cuda:0` when LibTorch sees a GPU, else `cpu`.
    Auto,
    /// LibTorch on the CPU.
    TchCpu,
    /// LibTorch on CUDA device N.
    Cuda(usize),
}

impl std::str::FromStr for DeviceName {
    type Err = DeviceError;
    fn from_str(name: &str) -> Result<Self, DeviceError> {
        Ok(match name {
            "cpu" | "flex" => DeviceName::Cpu,
            "auto" => DeviceName::Auto,
            "tch-cpu" => DeviceName::TchCpu,
            "cuda" => DeviceName::Cuda(0),
            n => match n.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => DeviceName::Cuda(i),
                _ => return Err(DeviceError::Unknown(name.into(), available())),
            },
        })
    }
}

impl TryFrom<String> for DeviceName {
    type Error = DeviceError;
    fn try_from(s: String) -> Result<Self, DeviceError> {
        s.parse()
    }
}

impl From<DeviceName> for String {
    fn from(d: DeviceName) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::Auto => f.write_str("auto"),
            DeviceName::TchCpu => f.write_str("tch-cpu"),
            DeviceName::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceName {
    /// `auto` made definite: `cuda:0` where LibTorch sees a GPU, else `cpu`.
    pub fn definite(self) -> DeviceName {
        match self {
            DeviceName::Auto if cuda_devices() > 0 => DeviceName::Cuda(0),
            DeviceName::Auto => DeviceName::Cpu,
            d => d,
        }
    }

    /// A short label for logs and the bench output (`auto` says what it chose).
    pub fn label(self) -> String {
        self.definite().to_string()
    }

    /// Whether the device is a CUDA GPU (after `auto` has chosen).
    pub fn is_cuda(self) -> bool {
        matches!(self.definite(), DeviceName::Cuda(_))
    }

    /// The burn device, or why this build or machine cannot provide it.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        let name = self.to_string();
        let cuda_index = match self.definite() {
            DeviceName::Cpu => return Ok(Device::flex()),
            DeviceName::Auto => unreachable!("definite() chose"),
            DeviceName::TchCpu => None,
            DeviceName::Cuda(i) => Some(i),
        };
        if !cfg!(feature = "tch") {
            return Err(DeviceError::NotBuilt(name, available()));
        }
        match cuda_index {
            None => Ok(libtorch_cpu()),
            Some(i) => {
                let n = cuda_devices();
                if i < n {
                    Ok(libtorch_cuda(i))
                } else if n == 0 {
                    Err(DeviceError::NoCuda(
                        name,
                        "LibTorch sees no CUDA GPU (no NVIDIA driver, or none visible: check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".into(),
                        available(),
                    ))
                } else {
                    Err(DeviceError::NoCuda(
                        name,
                        format!("LibTorch sees {n} CUDA GPU(s), numbered from 0"),
                        available(),
                    ))
                }
            }
        }
    }
}

/// Parse and resolve a device name in one go (`cpu`, `auto`, `tch-cpu`, `cuda`, `cuda:N`).
pub fn resolve(name: &str) -> Result<Device, DeviceError> {
    name.parse::<DeviceName>()?.resolve()
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 deprecates burn-tch, but it is the LibTorch path our users need
fn libtorch_cpu() -> Device {
    silence_csr_warning();
    Device::libtorch()
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn libtorch_cuda(i: usize) -> Device {
    silence_csr_warning();
    Device::libtorch_cuda(i)
}

#[cfg(feature = "tch")]
/// Have LibTorch print its one-time "Sparse CSR tensor support is in beta state" warning now,
/// with stderr pointed at /dev/null: printed in the middle of training it would tear the
/// training screen, and LibTorch offers no switch for it through `tch`. Called when a LibTorch
/// device is resolved (`sae::sparse_libtorch` is what uses CSR), before any screen or worker thread exists.
fn silence_csr_warning() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain descriptor calls; fd 2 is restored before returning
        unsafe {
            let saved = libc::dup(libc::STDERR_FILENO);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved < 0 || null < 0 {
                return;
            }
            libc::dup2(null, libc::STDERR_FILENO);
            let one = tch::Tensor::ones([1], (tch::Kind::Int64, tch::Device::Cpu));
            let _ = tch::Tensor::sparse_csr_tensor_crow_col_value_size(
                &tch::Tensor::from_slice(&[0i64, 1]),
                &tch::Tensor::from_slice(&[0i64]),
                &one.to_kind(tch::Kind::Float),
                [1, 1],
                (tch::Kind::Float, tch::Device::Cpu),
            );
            libc::dup2(saved, libc::STDERR_FILENO);
            libc::close(saved);
            libc::close(null);
        }
    });
}

#[cfg(not(feature = "tch"))]
fn libtorch_cpu() -> Device {
    unreachable!("resolve checks the tch feature first")
}

#[cfg(not(feature = "tch"))]
fn libtorch_cuda(_: usize) -> Device {
    unreachable!("auto picks CUDA only when cuda_devices() > 0, which needs the tch feature")
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
        for n in ["cpu", "auto", "tch-cpu", "cuda:3"] {
            assert_eq!(n.parse::<DeviceName>().unwrap().to_string(), n);
        }
        assert_eq!("cuda".parse::<DeviceName>().unwrap(), DeviceName::Cuda(0));
        assert_eq!("flex".parse::<DeviceName>().unwrap(), DeviceName::Cpu);
        if cfg!(feature = "tch") {
            assert!(resolve("tch-cpu").is_ok());
            if cuda_devices() == 0 {
                let e = resolve("cuda").unwrap_err().to_string();
                assert!(e.contains("sees no CUDA GPU"), "{e}");
                assert_eq!(DeviceName::Auto.label(), "cpu");
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
