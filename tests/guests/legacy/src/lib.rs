//! A handler built against `wasmserve:handler@0.1.0` exactly as that version was
//! released (`wit/handler.wit` here is a frozen copy; it has no `streaming`
//! interface), with wit-bindgen and no SDK. It sends the request body's length to the
//! model as a float32 `[1, 1]` tensor and answers `{"outputs": [...], "version":
//! "0.1.0"}` with the model's first output. A host of any later 0.1.z must still run it.

// The generated bindings' functions take a record's fields one by one.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "handler",
    path: "wit",
});

// The world's `use`d types (Tensor, Request, Response, Error, Context) are at the root.
use wasmserve::handler::types::Dtype;

struct Legacy;

impl Guest for Legacy {
    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn preprocess(req: Request) -> Result<Vec<Tensor>, Error> {
        let len: usize = req.parts.iter().map(|p| p.data.len()).sum();
        wasmserve::handler::host::log(
            wasmserve::handler::host::Level::Info,
            &format!("legacy handler: {len} bytes"),
        );
        Ok(vec![Tensor {
            name: String::new(),
            dtype: Dtype::Float32,
            shape: vec![1, 1],
            data: (len as f32).to_le_bytes().to_vec(),
        }])
    }

    fn postprocess(_req: Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let first = outputs.first().ok_or(Error {
            status: 500,
            message: "the model returned nothing".into(),
        })?;
        let values: Vec<String> = first
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
            .collect();
        Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"outputs": [{}], "version": "0.1.0"}}"#,
                values.join(", ")
            )
            .into_bytes(),
        })
    }
}

export!(Legacy);
