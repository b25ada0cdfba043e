//! The server's metrics, as the metrics API (`GET /metrics`) exposes them in the
//! Prometheus text format, built with `prometheus-client`.
//!
//! Names and labels are TorchServe's (its `metrics_mode=prometheus` output), so that
//! dashboards and alerts written for TorchServe keep working:
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `ts_inference_requests_total` | counter | model_name, model_version, hostname | prediction requests |
//! | `ts_inference_latency_microseconds` | counter | model_name, model_version, hostname | summed end-to-end latency |
//! | `ts_queue_latency_microseconds` | counter | model_name, model_version, hostname | summed time in the queue |
//! | `Requests2XX`, `Requests4XX`, `Requests5XX` | counter | Level, Hostname | answers of the inference and management APIs by status class |
//! | `QueueTime`, `WorkerThreadTime` | gauge (ms) | Level, Hostname | the last request's queue time; the lane's own time around it |
//! | `HandlerTime`, `PredictionTime` | gauge (ms) | ModelName, ModelVersion, Level, Hostname | the last request's pre+postprocess time; its batch's forward time |
//! | `CPUUtilization`, `MemoryUsed`, `MemoryAvailable`, `MemoryUtilization` | gauge | Level, Hostname | the host, at scrape time |
//! | `GPUUtilization`, `GPUMemoryUtilization` (percent), `GPUMemoryUsed` (MiB) | gauge | Level, DeviceId, Hostname | each GPU, at scrape time, where the NVIDIA driver reports it ([`crate::nvml`]) |
//! | `wasmserve_workers` | gauge | model_name, model_version, hostname | running worker lanes |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes` | counter, gauge | — | this process (the Prometheus convention) |
//! | `wasmserve_handler_dropped_total` | counter | model_name, model_version, kind | handler log lines / metric values over the per-call caps |
//! | a handler's own metric | gauge | the handler's labels + model_name, model_version | the last value it recorded |
//!
//! TorchServe's counters have no `_total` suffix (`ts_inference_latency_microseconds`,
//! `Requests2XX`); we keep its names, which the Prometheus text format allows (the
//! OpenMetrics `_total` rule would rename them and break dashboards). Unlike TorchServe
//! we do not end label sets with a trailing comma: that is not valid in the Prometheus
//! text format (`promtool check metrics` and OpenMetrics parsers reject it).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::sandbox::guest_io::ModelLabels;

/// Most series a model's handler may create with its own metrics.
pub const MAX_HANDLER_SERIES_PER_MODEL: usize = 1000;

type Labels = Vec<(&'static str, String)>;

/// A TorchServe counter: cumulative, typed `counter`, named without `_total`.
#[derive(Debug, Default, Clone)]
pub struct TsCounter(Counter<f64, AtomicU64>);

impl TsCounter {
    pub fn inc_by(&self, v: f64) {
        self.0.inc_by(v);
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

impl TypedMetric for TsCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for TsCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // A gauge sample is written with the bare name: TorchServe's counters.
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

type FGauge = Gauge<f64, AtomicU64>;

/// Every metric of the process. One per process: [`global`].
pub struct Metrics {
    /// Off (`enable_metrics_api=false`), recording is skipped.
    enabled: std::sync::atomic::AtomicBool,
    registry: Registry,
    hostname: String,
    requests: Family<Labels, TsCounter>,
    inference_latency: Family<Labels, TsCounter>,
    queue_latency: Family<Labels, TsCounter>,
    status: [Family<Labels, TsCounter>; 3],
    queue_time: Family<Labels, FGauge>,
    worker_thread_time: Family<Labels, FGauge>,
    handler_time: Family<Labels, FGauge>,
    prediction_time: Family<Labels, FGauge>,
    workers: Family<Labels, Gauge>,
    dropped: Family<Labels, TsCounter>,
    handler: std::sync::Arc<HandlerMetrics>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Labels, TsCounter>::default();
        let inference_latency = Family::<Labels, TsCounter>::default();
        let queue_latency = Family::<Labels, TsCounter>::default();
        let status: [Family<Labels, TsCounter>; 3] = Default::default();
        let queue_time = Family::<Labels, FGauge>::default();
        let worker_thread_time = Family::<Labels, FGauge>::default();
        let handler_time = Family::<Labels, FGauge>::default();
        let prediction_time = Family::<Labels, FGauge>::default();
        let workers = Family::<Labels, Gauge>::default();
        let dropped = Family::<Labels, TsCounter>::default();
        let handler = std::sync::Arc::new(HandlerMetrics::default());

        registry.register(
            "ts_inference_requests_total",
            "Total number of inference requests",
            requests.clone(),
        );
        registry.register(
            "ts_inference_latency_microseconds",
            "Cumulative inference duration in microseconds",
            inference_latency.clone(),
        );
        registry.register(
            "ts_queue_latency_microseconds",
            "Cumulative queue duration in microseconds",
            queue_latency.clone(),
        );
        for (class, family) in ["2XX", "4XX", "5XX"].iter().zip(&status) {
            registry.register(
                format!("Requests{class}"),
                format!("Answers with a {class} status (inference and management APIs)"),
                family.clone(),
            );
        }
        registry.register(
            "QueueTime",
            "Time the last request waited in its queue, in milliseconds",
            queue_time.clone(),
        );
        registry.register(
            "WorkerThreadTime",
            "Time the lane spent on the last request outside the handler and the forward, in milliseconds",
            worker_thread_time.clone(),
        );
        registry.register(
            "HandlerTime",
            "Time the handler took (preprocess + postprocess) for the last request, in milliseconds",
            handler_time.clone(),
        );
        registry.register(
            "PredictionTime",
            "Time the forward of the last request's batch took, in milliseconds",
            prediction_time.clone(),
        );
        registry.register("wasmserve_workers", "Worker lanes running", workers.clone());
        registry.register(
            "wasmserve_handler_dropped_total",
            "Handler log lines and metric values dropped over the per-call caps",
            dropped.clone(),
        );
        registry.register_collector(Box::new(SystemMetrics));
        registry.register_collector(Box::new(handler.clone()));
        Metrics {
            enabled: std::sync::atomic::AtomicBool::new(true),
            registry,
            hostname: hostname(),
            requests,
            inference_latency,
            queue_latency,
            status,
            queue_time,
            worker_thread_time,
            handler_time,
            prediction_time,
            workers,
            dropped,
            handler,
        }
    }

    /// Turns recording on or off (`enable_metrics_api`).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    fn on(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn model(&self, name: &str, version: &str) -> Labels {
        vec![
            ("model_name", name.to_string()),
            ("model_version", version.to_string()),
            ("hostname", self.hostname.clone()),
        ]
    }

    fn host(&self) -> Labels {
        vec![
            ("Level", "Host".into()),
            ("Hostname", self.hostname.clone()),
        ]
    }

    fn model_level(&self, name: &str, version: &str) -> Labels {
        vec![
            ("ModelName", name.to_string()),
            ("ModelVersion", version.to_string()),
            ("Level", "Model".into()),
            ("Hostname", self.hostname.clone()),
        ]
    }

    /// One answer of the inference or management API.
    pub fn api_answer(&self, status: u16) {
        if !self.on() {
            return;
        }
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => return,
        };
        self.status[class].get_or_create(&self.host()).inc_by(1.0);
    }

    /// One prediction request for a model version, answered after `latency`.
    pub fn inference(&self, name: &str, version: &str, latency: Duration) {
        if !self.on() {
            return;
        }
        let labels = self.model(name, version);
        self.requests.get_or_create(&labels).inc_by(1.0);
        self.inference_latency
            .get_or_create(&labels)
            .inc_by(latency.as_secs_f64() * 1e6);
    }

    /// What a lane measured for one request.
    pub fn lane_times(&self, name: &str, version: &str, times: &LaneTimes) {
        if !self.on() {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.queue_latency
            .get_or_create(&self.model(name, version))
            .inc_by(times.queue.as_secs_f64() * 1e6);
        let host = self.host();
        self.queue_time.get_or_create(&host).set(ms(times.queue));
        self.worker_thread_time
            .get_or_create(&host)
            .set(ms(times.lane));
        let model = self.model_level(name, version);
        self.handler_time
            .get_or_create(&model)
            .set(ms(times.handler));
        self.prediction_time
            .get_or_create(&model)
            .set(ms(times.forward));
    }

    /// The number of lanes of a model version.
    pub fn set_workers(&self, name: &str, version: &str, n: usize) {
        self.workers
            .get_or_create(&self.model(name, version))
            .set(n as i64);
    }

    /// Forgets a model version's series (it was unregistered).
    pub fn remove_model(&self, name: &str, version: &str) {
        let labels = self.model(name, version);
        for f in [&self.requests, &self.inference_latency, &self.queue_latency] {
            f.remove(&labels);
        }
        self.workers.remove(&labels);
        let model = self.model_level(name, version);
        self.handler_time.remove(&model);
        self.prediction_time.remove(&model);
        self.handler.remove_model(name, version);
    }

    /// The text exposition; with `names`, only those metric families (TorchServe's
    /// `?name[]=` filter).
    pub fn encode(&self, names: &[String]) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return String::new();
        }
        if names.is_empty() {
            return text;
        }
        filter_families(&text, names)
    }
}

/// What a lane measured for one request, for [`Metrics::lane_times`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LaneTimes {
    /// From queueing to the lane taking it.
    pub queue: Duration,
    /// Its preprocess + postprocess.
    pub handler: Duration,
    /// Its batch's forward.
    pub forward: Duration,
    /// The lane's own time for its batch, outside the handler and the forward.
    pub lane: Duration,
}

/// Keeps the families named in `names` (and the `# EOF` line) of a text exposition.
fn filter_families(text: &str, names: &[String]) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let name = rest.split(' ').next().unwrap_or("");
            keep = names.iter().any(|n| n == name);
        } else if line == "# EOF" {
            keep = true;
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Records a handler's own metric (the WIT `host.metric`).
pub fn handler_metric(
    labels: &ModelLabels,
    name: &str,
    value: f64,
    unit: &str,
    extra: &[(String, String)],
) {
    if global().on() {
        global().handler.record(labels, name, value, unit, extra);
    }
}

/// Counts what a handler call dropped over its caps.
pub fn handler_dropped(labels: &ModelLabels, kind: &'static str, n: u32) {
    global()
        .dropped
        .get_or_create(&vec![
            ("model_name", labels.model_name.clone()),
            ("model_version", labels.model_version.clone()),
            ("kind", kind.to_string()),
        ])
        .inc_by(f64::from(n));
}

/// Names a handler may not take: the server's own families.
const RESERVED: &[&str] = &[
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
    "Requests2XX",
    "Requests4XX",
    "Requests5XX",
    "QueueTime",
    "WorkerThreadTime",
    "HandlerTime",
    "PredictionTime",
    "CPUUtilization",
    "MemoryUsed",
    "MemoryAvailable",
    "MemoryUtilization",
    "GPUUtilization",
    "GPUMemoryUtilization",
    "GPUMemoryUsed",
    "wasmserve_workers",
    "wasmserve_handler_dropped_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
];

type SeriesKey = Vec<(String, String)>;
/// One handler metric: its help text and its series' last values.
type HandlerFamily = (String, BTreeMap<SeriesKey, f64>);

/// The handlers' own metrics: name → (help, series → last value).
#[derive(Debug, Default)]
struct HandlerMetrics {
    families: Mutex<BTreeMap<String, HandlerFamily>>,
    /// Series per `(model, version)`, for the cap.
    counts: Mutex<BTreeMap<(String, String), usize>>,
}

impl HandlerMetrics {
    fn record(
        &self,
        model: &ModelLabels,
        name: &str,
        value: f64,
        unit: &str,
        extra: &[(String, String)],
    ) {
        let name = sanitize(name);
        if RESERVED.contains(&name.as_str()) {
            handler_dropped(model, "metric", 1);
            return;
        }
        // The host's labels win: a guest cannot pose as another model.
        let mut key: SeriesKey = extra
            .iter()
            .map(|(k, v)| (sanitize(k), v.clone()))
            .filter(|(k, _)| k != "model_name" && k != "model_version")
            .collect();
        key.sort();
        key.dedup_by(|a, b| a.0 == b.0);
        key.push(("model_name".into(), model.model_name.clone()));
        key.push(("model_version".into(), model.model_version.clone()));
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name).or_insert_with(|| {
            let help = if unit.is_empty() {
                "Handler metric".to_string()
            } else {
                format!(
                    "Handler metric with unit: {}",
                    unit.replace(['\n', '\\'], " ")
                )
            };
            (help, BTreeMap::new())
        });
        if let Some(v) = family.1.get_mut(&key) {
            *v = value;
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts
            .entry((model.model_name.clone(), model.model_version.clone()))
            .or_default();
        if *count >= MAX_HANDLER_SERIES_PER_MODEL {
            drop(counts);
            handler_dropped(model, "metric", 1);
            return;
        }
        *count += 1;
        family.1.insert(key, value);
    }

    fn remove_model(&self, name: &str, version: &str) {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for (_, series) in families.values_mut() {
            series.retain(|k, _| {
                !(k.contains(&("model_name".into(), name.into()))
                    && k.contains(&("model_version".into(), version.into())))
            });
        }
        families.retain(|_, (_, s)| !s.is_empty());
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(name.to_string(), version.to_string()));
    }
}

impl prometheus_client::collector::Collector for HandlerMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for (name, (help, series)) in families.iter() {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, value) in series {
                metric.encode_family(labels)?.encode_gauge(value)?;
            }
        }
        Ok(())
    }
}

/// A metric or label name as Prometheus allows it: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The host's and the process's CPU and memory, read from /proc at scrape time.
#[derive(Debug)]
struct SystemMetrics;

impl prometheus_client::collector::Collector for SystemMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let host: Labels = global().host();
        let mut gauge = |name: &str, help: &str, labels: &Labels, v: f64| {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            m.encode_family(labels)?.encode_gauge(&v)
        };
        if let Some(cpu) = host_cpu_utilization() {
            gauge(
                "CPUUtilization",
                "Host CPU utilization, in percent",
                &host,
                cpu,
            )?;
        }
        if let Some((total, available)) = meminfo() {
            let used = total - available;
            gauge(
                "MemoryUsed",
                "Host memory used, in megabytes",
                &host,
                used / 1024.0,
            )?;
            gauge(
                "MemoryAvailable",
                "Host memory available, in megabytes",
                &host,
                available / 1024.0,
            )?;
            gauge(
                "MemoryUtilization",
                "Host memory utilization, in percent",
                &host,
                100.0 * used / total.max(1.0),
            )?;
        }
        let none: Labels = Vec::new();
        if let Some(rss) = process_rss_bytes() {
            gauge(
                "process_resident_memory_bytes",
                "Resident memory of this process, in bytes",
                &none,
                rss,
            )?;
        }
        if let Some(cpu) = process_cpu_seconds() {
            // Named in full, as the Prometheus text format has counters (see TsCounter).
            let mut m = encoder.encode_descriptor(
                "process_cpu_seconds_total",
                "CPU time of this process, in seconds",
                None,
                MetricType::Counter,
            )?;
            m.encode_family(&none)?.encode_gauge(&cpu)?;
        }
        let gpus = crate::nvml::readings();
        if !gpus.is_empty() {
            type Reading = fn(&crate::nvml::GpuReading) -> f64;
            let families: [(&str, &str, Reading); 3] = [
                ("GPUUtilization", "GPU utilization, in percent", |r| {
                    r.utilization
                }),
                (
                    "GPUMemoryUtilization",
                    "GPU memory utilization, in percent",
                    |r| r.memory_utilization,
                ),
                ("GPUMemoryUsed", "GPU memory used, in megabytes", |r| {
                    r.memory_used_mib
                }),
            ];
            for (name, help, value) in families {
                let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for r in &gpus {
                    let mut labels = host.clone();
                    labels.insert(1, ("DeviceId", r.index.to_string()));
                    m.encode_family(&labels)?.encode_gauge(&value(r))?;
                }
            }
        }
        Ok(())
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// (total, available) in KiB.
fn meminfo() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Busy share of the host's CPU time since the previous scrape, in percent.
fn host_cpu_utilization() -> Option<f64> {
    static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let (dt, di) = (total.saturating_sub(last.0), idle.saturating_sub(last.1));
    *last = (total, idle);
    if dt == 0 {
        return Some(0.0);
    }
    Some(100.0 * (dt - di.min(dt)) as f64 / dt as f64)
}

fn process_rss_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

/// The sum of the samples of `name` whose label text contains `label_filter`, read from
/// an exposition (for tests and benchmarks).
pub fn sample(text: &str, name: &str, label_filter: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let series_name = series.split('{').next().unwrap_or(series);
        if series_name == name && series.contains(label_filter) {
            found = Some(found.unwrap_or(0.0) + value.parse::<f64>().ok()?);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchserve_counters_keep_their_names() {
        let m = global();
        m.inference("m", "1.0", Duration::from_micros(1500));
        m.api_answer(200);
        m.api_answer(404);
        let text = m.encode(&[]);
        assert!(
            text.contains("# TYPE ts_inference_latency_microseconds counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "ts_inference_latency_microseconds{model_name=\"m\",model_version=\"1.0\""
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE Requests2XX counter"), "{text}");
        assert!(!text.contains("Requests2XX_total"), "{text}");
        assert!(!text.contains(",}"), "no trailing commas: {text}");
        let only = m.encode(&["Requests4XX".to_string()]);
        assert!(only.contains("Requests4XX{"), "{only}");
        assert!(!only.contains("Requests2XX"), "{only}");
    }

    #[test]
    fn handler_labels_cannot_override_the_hosts() {
        let labels = ModelLabels {
            model_name: "real".into(),
            model_version: "2".into(),
        };
        handler_metric(
            &labels,
            "my-metric",
            3.5,
            "ms",
            &[
                ("model_name".into(), "fake".into()),
                ("kind".into(), "a".into()),
            ],
        );
        let text = global().encode(&["my_metric".to_string()]);
        assert!(
            text.contains("my_metric{kind=\"a\",model_name=\"real\",model_version=\"2\"} 3.5"),
            "{text}"
        );
        assert!(!text.contains("fake"), "{text}");
    }
}
