//! Choosing the compute device from the names users type (`cpu`, `cuda:0`, `metal`).

use candle_core::Device;

use crate::error::{ModelError, Result};

/// Parses `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N` and opens that device.
///
/// A GPU name in a build without that backend is an error that says how to rebuild, never a
/// silent fall back to the CPU.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let (kind, ordinal) = match spec.split_once(':') {
        Some((k, n)) => {
            let n: usize = n.parse().map_err(|_| {
                ModelError::InvalidArgument(format!(
                    "device {spec:?}: the ordinal after ':' must be a number (e.g. cuda:0)"
                ))
            })?;
            (k.to_string(), n)
        }
        None => (spec.clone(), 0),
    };
    match kind.as_str() {
        "cpu" if ordinal == 0 => Ok(Device::Cpu),
        "cuda" => open_cuda(ordinal),
        "metal" => Err(ModelError::InvalidArgument(format!(
            "device {spec:?}: this build has no Metal support"
        ))),
        _ => Err(ModelError::InvalidArgument(format!(
            "unknown device {spec:?} (cpu, cuda, cuda:N)"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|e| ModelError::InvalidArgument(format!("cannot open CUDA device {ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(ModelError::InvalidArgument(format!(
        "device cuda:{ordinal}: this build has no CUDA support (rebuild with `--features cuda`, \
         see scripts/cuda-toolkit.sh)"
    )))
}

/// Free and total memory of a GPU in bytes; `None` on the CPU.
pub fn memory_info(device: &Device) -> Result<Option<(usize, usize)>> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .map(Some)
            .map_err(|e| ModelError::InvalidArgument(format!("CUDA memory query failed: {e}"))),
        _ => Ok(None),
    }
}

/// A short human name of the device, for logs and reports.
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_nonsense() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cpu:1", ""] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("device"), "{bad}: {e}");
        }
        assert!(describe(&Device::Cpu) == "cpu");
        assert!(memory_info(&Device::Cpu).unwrap().is_none());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        let e = parse_device("cuda:0").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
