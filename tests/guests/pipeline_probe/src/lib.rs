//! A probe of the `pipeline` world for tests/pipeline.rs. The request body is JSON:
//! `{"model": NAME, "version": V, "shape": [...], "data": [f32, ...], "calls": N}`; the
//! pipeline calls `models.infer` `calls` times (default 1) with that float32 tensor and
//! answers `{"outputs": [{"name", "shape", "data"}]}` of the last call. A failed call's
//! error is answered with its own status and message, so that the test sees what the
//! guest saw.

// The generated host-import glue (`host.metric`) takes more arguments than clippy likes.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "pipeline",
    path: "../../../wit",
});

use wasmserve::handler::models;
use wasmserve::handler::types::{Dtype, Tensor};

struct Probe;

fn bad(message: String) -> Error {
    Error {
        status: 400,
        message,
    }
}

impl Guest for Probe {
    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn handle(req: Request) -> Result<Response, Error> {
        let body = req.parts.first().map(|p| p.data.as_slice()).unwrap_or(b"");
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
        let model = v["model"].as_str().unwrap_or_default().to_string();
        let version = v["version"].as_str().unwrap_or_default().to_string();
        let shape: Vec<u64> = v["shape"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d.as_u64()).collect())
            .unwrap_or_default();
        let data: Vec<u8> = v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                    .collect()
            })
            .unwrap_or_default();
        let calls = v["calls"].as_u64().unwrap_or(1);
        let input = Tensor {
            name: String::new(),
            dtype: Dtype::Float32,
            shape,
            data,
        };
        let mut outputs = Vec::new();
        for _ in 0..calls {
            outputs = models::infer(&model, &version, std::slice::from_ref(&input))?;
        }
        let outputs: Vec<serde_json::Value> = outputs
            .iter()
            .map(|t| {
                let data: Vec<f32> = t
                    .data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                serde_json::json!({"name": t.name, "shape": t.shape, "data": data})
            })
            .collect();
        Ok(Response {
            status: 200,
            headers: vec![],
            body: serde_json::json!({ "outputs": outputs })
                .to_string()
                .into_bytes(),
        })
    }
}

export!(Probe);
