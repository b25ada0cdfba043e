//! Devices: which GPUs this server has and may use, and which devices a model's workers
//! run on.
//!
//! TorchServe's rules, as `model-config.yaml` and `config.properties` give them:
//!
//! | `deviceType` | `deviceIds` | GPUs usable | the model's devices |
//! |---|---|---|---|
//! | not set | not set | 0 | the CPU |
//! | not set | not set | n > 0 | `cuda:0` … `cuda:n-1` |
//! | `cpu` | (ignored) | any | the CPU |
//! | `gpu` (or `deviceIds` alone) | not set | n > 0 | `cuda:0` … `cuda:n-1` |
//! | `gpu` (or `deviceIds` alone) | `[i, …]` | n > every i | those GPUs, in that order |
//! | `gpu` (or `deviceIds` alone) | any | 0, or an id ≥ n | refused, with the reason |
//!
//! "GPUs usable" is the number CUDA reports, capped by `number_of_gpu` where set (0
//! keeps every model on the CPU). Worker `k` of a model runs on device `k mod len` of
//! its list (round-robin), and the model's weights are loaded once per device.

use std::fmt;

/// Where a model asks to run (`deviceType`, `deviceIds`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeviceRequest {
    /// Neither key: the GPUs where there are any, else the CPU.
    #[default]
    Any,
    /// `deviceType: cpu`.
    Cpu,
    /// `deviceType: gpu` or `deviceIds`: GPUs, all usable ones or these.
    Gpu(Option<Vec<usize>>),
}

impl DeviceRequest {
    /// From the yaml's `deviceType` (`cpu`, `gpu`; case-insensitive) and `deviceIds`.
    pub fn parse(device_type: Option<&str>, ids: Option<Vec<usize>>) -> Result<Self, String> {
        match device_type.map(str::to_ascii_lowercase).as_deref() {
            Some("cpu") => Ok(DeviceRequest::Cpu),
            Some("gpu") | Some("cuda") => Ok(DeviceRequest::Gpu(ids)),
            None if ids.is_some() => Ok(DeviceRequest::Gpu(ids)),
            None => Ok(DeviceRequest::Any),
            Some(other) => Err(format!("`{other}`; it must be `cpu` or `gpu`")),
        }
    }
}

/// One device a model runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda(usize),
}

impl DeviceKind {
    /// libtorch's device.
    pub fn torch(self) -> tch::Device {
        match self {
            DeviceKind::Cpu => tch::Device::Cpu,
            DeviceKind::Cuda(i) => tch::Device::Cuda(i),
        }
    }

    /// The GPU's index, for a GPU.
    pub fn gpu(self) -> Option<usize> {
        match self {
            DeviceKind::Cpu => None,
            DeviceKind::Cuda(i) => Some(i),
        }
    }
}

/// `cpu` or `cuda:N`, as PyTorch spells devices (the handler's `context.device`).
impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceKind::Cpu => f.write_str("cpu"),
            DeviceKind::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The GPUs this server may use: CUDA's count, capped by `number_of_gpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpus {
    /// What CUDA reports (0 for a CPU libtorch, or with no driver or device).
    pub present: usize,
    /// How many of them models may use.
    pub usable: usize,
}

impl Gpus {
    /// Asks libtorch how many CUDA devices there are. A CPU build of libtorch, or a
    /// CUDA build without a driver, reports none.
    pub fn probe(number_of_gpu: Option<usize>) -> Gpus {
        let present = if tch::utils::has_cuda() {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        Gpus::new(present, number_of_gpu)
    }

    /// `present` GPUs, of which `number_of_gpu` (where set) may be used.
    pub fn new(present: usize, number_of_gpu: Option<usize>) -> Gpus {
        Gpus {
            present,
            usable: number_of_gpu.map_or(present, |n| n.min(present)),
        }
    }

    /// The devices for a model's `request`, or why it cannot have them (see the
    /// module's table).
    pub fn plan(&self, request: &DeviceRequest) -> Result<Vec<DeviceKind>, String> {
        let all = || (0..self.usable).map(DeviceKind::Cuda).collect::<Vec<_>>();
        match request {
            DeviceRequest::Cpu => Ok(vec![DeviceKind::Cpu]),
            DeviceRequest::Any if self.usable == 0 => Ok(vec![DeviceKind::Cpu]),
            DeviceRequest::Any => Ok(all()),
            DeviceRequest::Gpu(_) if self.usable == 0 => Err(self.none_usable()),
            DeviceRequest::Gpu(None) => Ok(all()),
            DeviceRequest::Gpu(Some(ids)) if ids.is_empty() => {
                Err("deviceIds is empty; list GPU indices, or leave it out for all".into())
            }
            DeviceRequest::Gpu(Some(ids)) => {
                if let Some(bad) = ids.iter().find(|&&i| i >= self.usable) {
                    return Err(format!(
                        "deviceIds names GPU {bad}, but this server may use GPUs 0 to {} \
                         ({} present{})",
                        self.usable - 1,
                        self.present,
                        self.cap_note()
                    ));
                }
                let mut seen = Vec::new();
                for &i in ids {
                    if !seen.contains(&DeviceKind::Cuda(i)) {
                        seen.push(DeviceKind::Cuda(i));
                    }
                }
                Ok(seen)
            }
        }
    }

    fn none_usable(&self) -> String {
        if self.present == 0 {
            "the model asks for a GPU (deviceType: gpu or deviceIds in its model-config.yaml), \
             but this server sees no CUDA device (a CPU build of wasmserve, or no NVIDIA \
             driver or GPU); set deviceType: cpu to serve it on the CPU, or serve it where \
             there is a GPU with a CUDA build (`make build GPU=1`)"
                .into()
        } else {
            format!(
                "the model asks for a GPU (deviceType: gpu or deviceIds), but number_of_gpu=0 \
                 keeps this server's {} GPU(s) unused; raise number_of_gpu or set deviceType: cpu",
                self.present
            )
        }
    }

    fn cap_note(&self) -> String {
        if self.usable < self.present {
            format!(", number_of_gpu={}", self.usable)
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceKind::*;

    #[test]
    fn the_rules_table() {
        let none = Gpus::new(0, None);
        let two = Gpus::new(2, None);
        let gpu = |ids: Option<Vec<usize>>| DeviceRequest::Gpu(ids);
        assert_eq!(none.plan(&DeviceRequest::Any), Ok(vec![Cpu]));
        assert_eq!(two.plan(&DeviceRequest::Any), Ok(vec![Cuda(0), Cuda(1)]));
        assert_eq!(two.plan(&DeviceRequest::Cpu), Ok(vec![Cpu]));
        assert_eq!(two.plan(&gpu(None)), Ok(vec![Cuda(0), Cuda(1)]));
        assert_eq!(two.plan(&gpu(Some(vec![1]))), Ok(vec![Cuda(1)]));
        assert_eq!(
            two.plan(&gpu(Some(vec![1, 0, 1]))),
            Ok(vec![Cuda(1), Cuda(0)])
        );
        assert!(
            none.plan(&gpu(None))
                .unwrap_err()
                .contains("no CUDA device")
        );
        assert!(two.plan(&gpu(Some(vec![2]))).unwrap_err().contains("GPU 2"));
        assert!(two.plan(&gpu(Some(vec![]))).is_err());
    }

    #[test]
    fn number_of_gpu_caps_what_models_get() {
        let capped = Gpus::new(4, Some(1));
        assert_eq!(capped.usable, 1);
        assert_eq!(capped.plan(&DeviceRequest::Any), Ok(vec![Cuda(0)]));
        assert!(
            capped
                .plan(&DeviceRequest::Gpu(Some(vec![2])))
                .unwrap_err()
                .contains("number_of_gpu=1")
        );
        let off = Gpus::new(4, Some(0));
        assert_eq!(off.plan(&DeviceRequest::Any), Ok(vec![Cpu]));
        assert!(
            off.plan(&DeviceRequest::Gpu(None))
                .unwrap_err()
                .contains("number_of_gpu=0")
        );
        assert_eq!(Gpus::new(1, Some(8)).usable, 1);
    }

    #[test]
    fn requests_from_the_yaml_keys() {
        assert_eq!(DeviceRequest::parse(None, None), Ok(DeviceRequest::Any));
        assert_eq!(
            DeviceRequest::parse(Some("CPU"), Some(vec![0])),
            Ok(DeviceRequest::Cpu)
        );
        assert_eq!(
            DeviceRequest::parse(None, Some(vec![0])),
            Ok(DeviceRequest::Gpu(Some(vec![0])))
        );
        assert_eq!(
            DeviceRequest::parse(Some("gpu"), None),
            Ok(DeviceRequest::Gpu(None))
        );
        assert!(DeviceRequest::parse(Some("tpu"), None).is_err());
        assert_eq!(Cuda(3).to_string(), "cuda:3");
        assert_eq!(Cpu.to_string(), "cpu");
    }
}
