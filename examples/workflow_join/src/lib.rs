//! The function nodes of a workflow, as one component of the `pipeline` world: the
//! host calls `handle` once per function node, with the node's name in the
//! `x-wasmserve-workflow-node` header and its input as the request's parts (the
//! client's request for a start node; one part `body` for a node with one parent;
//! one part per parent, named by the parent, for a node with several).
//!
//! - `pre`: passes the client's image on (its `data` or `body` part, else the first);
//! - `join`: combines its parents' JSON answers into one object: each parent's answer
//!   under its name, and under `"top"` each parent's best label (the `letter` of an
//!   answer that has one, else the key with the highest score);
//! - `letter`: the `letter` of its parent's JSON answer, as plain text.

#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "pipeline",
    path: "../../wit",
});

use serde_json::{Map, Value};
use wasmserve::handler::types::Part;

const NODE_HEADER: &str = "x-wasmserve-workflow-node";

struct Functions;

fn error(status: u16, message: String) -> Error {
    Error { status, message }
}

fn json(body: Value) -> Response {
    Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn parse(part: &Part) -> Result<Value, Error> {
    serde_json::from_slice(&part.data)
        .map_err(|e| error(400, format!("input {} is not JSON: {e}", part.name)))
}

/// The best label of a classifier's answer.
fn top(answer: &Value) -> Value {
    if let Some(letter) = answer.get("letter") {
        return letter.clone();
    }
    answer
        .as_object()
        .and_then(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k, v.as_f64()?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| Value::String(k.clone()))
        })
        .unwrap_or(Value::Null)
}

fn pre(req: Request) -> Result<Response, Error> {
    let part = req
        .parts
        .iter()
        .find(|p| p.name == "data" || p.name == "body")
        .or_else(|| req.parts.first())
        .ok_or_else(|| error(400, "the request carries no image".into()))?;
    Ok(Response {
        status: 200,
        headers: vec![(
            "content-type".into(),
            part.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )],
        body: part.data.clone(),
    })
}

fn join(req: Request) -> Result<Response, Error> {
    let mut all = Map::new();
    let mut tops = Map::new();
    for part in &req.parts {
        let answer = parse(part)?;
        tops.insert(part.name.clone(), top(&answer));
        all.insert(part.name.clone(), answer);
    }
    all.insert("top".into(), Value::Object(tops));
    Ok(json(Value::Object(all)))
}

fn letter(req: Request) -> Result<Response, Error> {
    let part = req
        .parts
        .first()
        .ok_or_else(|| error(400, "no input".into()))?;
    let letter = parse(part)?
        .get("letter")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| error(400, "the input has no letter".into()))?;
    Ok(Response {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: letter.into_bytes(),
    })
}

impl Guest for Functions {
    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn handle(req: Request) -> Result<Response, Error> {
        let node = req
            .headers
            .iter()
            .find(|(k, _)| k == NODE_HEADER)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        match node.as_str() {
            "pre" => pre(req),
            "join" => join(req),
            "letter" => letter(req),
            other => Err(error(
                404,
                format!("this handler has no function node {other:?} (it has pre, join, letter)"),
            )),
        }
    }
}

export!(Functions);
