//! The only place that names compute backends: turns a device name from the config or the
//! command line into a burn [`Device`].

use burn::tensor::Device;

/// A device name that this build cannot provide.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not one we know.
    #[error("unknown device `{0}`: expected one of {1}")]
    Unknown(String, &'static str),
    /// The name needs a backend this binary was built without.
    #[error(
        "device `{0}` needs the LibTorch backend, which this build does not include (the `tch` feature is not available yet); available here: {1}"
    )]
    NotBuilt(String, &'static str),
}

// The LibTorch devices (tch-cpu, cuda, cuda:N) arrive with the `tch` feature.
const AVAILABLE: &str = "cpu, auto";

/// Resolve a device name (`cpu`, `auto`; with the `tch` feature also `tch-cpu`, `cuda`, `cuda:N`).
pub fn resolve(name: &str) -> Result<Device, DeviceError> {
    match name {
        "cpu" | "flex" | "auto" => Ok(Device::flex()),
        "tch-cpu" | "cuda" => Err(DeviceError::NotBuilt(name.to_string(), AVAILABLE)),
        n if n.starts_with("cuda:") => Err(DeviceError::NotBuilt(name.to_string(), AVAILABLE)),
        _ => Err(DeviceError::Unknown(name.to_string(), AVAILABLE)),
    }
}

/// A short label for a resolved device, for logs and the bench output.
pub fn label(name: &str) -> String {
    match name {
        "auto" | "flex" => "cpu".to_string(),
        other => other.to_string(),
    }
}

/// Whether the fused host-memory kernels (`sae::fused`) apply: the device keeps tensors in host
/// memory (burn's flex backend), and `JUMPSCOPE_NO_FUSED` is not set (it forces the generic
/// tensor-op path, for comparisons).
pub fn fused_host(device: &Device) -> bool {
    *device == Device::flex() && std::env::var_os("JUMPSCOPE_NO_FUSED").is_none()
}
