//! GPU readings (utilization, memory) from NVIDIA's management library, NVML, which
//! the driver installs as `libnvidia-ml.so.1` and which is loaded at run time: a machine
//! without the driver gives no readings, and nothing else changes. What the metrics
//! API shows as `GPUUtilization`, `GPUMemoryUtilization` and `GPUMemoryUsed`, and
//! `describe` as a worker's `gpuUsage`, as TorchServe does from `nvidia-smi`.
//!
//! GPUs are NVML's indices (PCI bus order), as `nvidia-smi` numbers them; CUDA's
//! numbering agrees with them under `CUDA_DEVICE_ORDER=PCI_BUS_ID` and without
//! `CUDA_VISIBLE_DEVICES` reordering them.

use std::sync::OnceLock;

use nvml_wrapper::Nvml;

/// One GPU's state when it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReading {
    pub index: usize,
    /// Percent of the last sample period in which a kernel ran.
    pub utilization: f64,
    /// Percent of the last sample period in which memory was read or written.
    pub memory_activity: f64,
    /// Memory in use, in MiB, and in percent of the device's memory.
    pub memory_used_mib: f64,
    pub memory_utilization: f64,
}

impl GpuReading {
    /// `describe`'s `gpuUsage`, in TorchServe's layout (its `nvidia-smi` query).
    pub fn describe(&self) -> String {
        format!(
            "gpuId::{} utilization.gpu [%]::{} % utilization.memory [%]::{} % memory.used [MiB]::{} MiB",
            self.index,
            self.utilization.round(),
            self.memory_activity.round(),
            self.memory_used_mib.round()
        )
    }
}

fn nvml() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(|| match Nvml::init() {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!("no GPU readings (NVML: {e})");
            None
        }
    })
    .as_ref()
}

/// Every GPU's reading now; none without the driver. A GPU that cannot be read is
/// left out.
pub fn readings() -> Vec<GpuReading> {
    let Some(nvml) = nvml() else {
        return Vec::new();
    };
    let count = nvml.device_count().unwrap_or(0);
    (0..count).filter_map(|i| read(nvml, i)).collect()
}

/// GPU `index`'s reading, if there is one.
pub fn reading(index: usize) -> Option<GpuReading> {
    read(nvml()?, u32::try_from(index).ok()?)
}

fn read(nvml: &Nvml, index: u32) -> Option<GpuReading> {
    let device = nvml.device_by_index(index).ok()?;
    let memory = device.memory_info().ok()?;
    let rates = device.utilization_rates().ok();
    Some(GpuReading {
        index: index as usize,
        utilization: rates.as_ref().map_or(0.0, |r| r.gpu as f64),
        memory_activity: rates.as_ref().map_or(0.0, |r| r.memory as f64),
        memory_used_mib: memory.used as f64 / (1u64 << 20) as f64,
        memory_utilization: 100.0 * memory.used as f64 / memory.total.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_usage_reads_as_torchserve_writes_it() {
        let r = GpuReading {
            index: 1,
            utilization: 37.4,
            memory_activity: 12.0,
            memory_used_mib: 1536.2,
            memory_utilization: 2.0,
        };
        assert_eq!(
            r.describe(),
            "gpuId::1 utilization.gpu [%]::37 % utilization.memory [%]::12 % memory.used [MiB]::1536 MiB"
        );
    }

    #[test]
    fn no_driver_no_readings_and_no_panic() {
        // On a machine with a driver this lists its GPUs; without one, none.
        let all = readings();
        assert!(all.iter().all(|r| r.memory_utilization <= 100.0));
        if all.is_empty() {
            assert_eq!(reading(0), None);
        }
    }
}
