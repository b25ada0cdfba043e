//! TorchServe's workflow APIs over the core's workflows (`core::workflow`):
//!
//! - management: `POST /workflows?url=&workflow_name=` registers a `.war` (query
//!   parameters or a JSON body; needs `enable_model_api`), `GET /workflows?limit=&next_page_token=`
//!   lists, `GET /workflows/{name}` describes, `DELETE /workflows/{name}` unregisters;
//! - inference: `POST /wfpredict/{name}` runs a request through the workflow and
//!   answers the leaf's output (several leaves: a JSON object of them by node name).

use std::sync::Arc;

use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::management::{Params, int_param, merge_json_body};
use crate::core::workflow::{NodeOutput, Workflow, WorkflowRegistration};
use crate::core::{Core, Error};
use crate::http::client_body::ClientBody;
use crate::http::{Body, body, full, handler_headers, json_response};
use crate::sandbox;

fn not_allowed() -> Error {
    Error::MethodNotAllowed("Requested method is not allowed, please refer to API document.".into())
}

/// Answers a management request under `/workflows`.
pub async fn manage(
    core: &Arc<Core>,
    req: Request<ClientBody>,
    segs: &[&str],
    mut params: Params,
) -> Result<Response<Body>, Error> {
    let method = req.method().clone();
    let (code, body) = match (segs, &method) {
        (["workflows"], &Method::GET) => list(core, &params)?,
        (["workflows"], &Method::POST) => {
            let bytes = body::read_limited(
                req.into_body(),
                core.config.max_request_size,
                core.config.client_timeout,
            )
            .await?;
            merge_json_body(&mut params, &bytes)?;
            register(core, &params).await?
        }
        (["workflows", name], &Method::GET) => {
            let workflow = core.workflow(name)?;
            (StatusCode::OK, json!([describe(&workflow)]))
        }
        (["workflows", name], &Method::DELETE) => {
            core.unregister_workflow(name).await?;
            (
                StatusCode::OK,
                json!({"status": format!("Workflow \"{name}\" unregistered")}),
            )
        }
        _ => return Err(not_allowed()),
    };
    Ok(json_response(code, &body))
}

fn list(core: &Core, params: &Params) -> Result<(StatusCode, serde_json::Value), Error> {
    // TorchServe's paging: limit outside 0..=100 means 100; the token is the offset.
    let limit = match int_param(params, "limit")? {
        Some(l) if (0..=100).contains(&l) => l as usize,
        _ => 100,
    };
    let start = int_param(params, "next_page_token")?.unwrap_or(0).max(0) as usize;
    let all = core.workflow_list();
    let end = (start + limit).min(all.len());
    let page: Vec<serde_json::Value> = all
        .get(start.min(all.len())..end)
        .unwrap_or_default()
        .iter()
        .map(|w| json!({"workflowName": w.name, "workflowUrl": w.url}))
        .collect();
    let mut body = serde_json::Map::new();
    if end < all.len() {
        body.insert("nextPageToken".into(), end.to_string().into());
    }
    body.insert("workflows".into(), page.into());
    Ok((StatusCode::OK, body.into()))
}

async fn register(
    core: &Arc<Core>,
    params: &Params,
) -> Result<(StatusCode, serde_json::Value), Error> {
    if !core.config.enable_model_api {
        return Err(Error::ModelApiDisabled);
    }
    let url = params
        .get("url")
        .ok_or_else(|| Error::invalid("Parameter url is required."))?;
    let registration = WorkflowRegistration {
        url: url.clone(),
        name: params
            .get("workflow_name")
            .filter(|n| !n.is_empty())
            .cloned(),
    };
    let wf = core.register_workflow(registration).await?;
    Ok((
        StatusCode::OK,
        json!({"status": format!("Workflow {} has been registered and scaled successfully.", wf.name)}),
    ))
}

/// TorchServe's description of a workflow, with its models (`<workflow>__<node>`) too.
pub fn describe(w: &Workflow) -> serde_json::Value {
    let d = &w.spec.defaults;
    json!({
        "workflowName": w.name,
        "workflowUrl": w.url,
        "minWorkers": d.min_workers,
        "maxWorkers": d.max_workers,
        "batchSize": d.batch_size,
        "maxBatchDelay": d.max_batch_delay,
        "workflowDag": render_dag(w),
        "models": w.model_names(),
    })
}

/// `{a=[b, c], b=[d]}`: TorchServe's rendering of the DAG (Java's map `toString`),
/// the nodes in the specification's order.
fn render_dag(w: &Workflow) -> String {
    let dag = &w.dag;
    let entries: Vec<String> = (0..dag.nodes.len())
        .filter(|&n| !dag.children[n].is_empty())
        .map(|n| {
            let next: Vec<&str> = dag.children[n]
                .iter()
                .map(|&c| dag.nodes[c].as_str())
                .collect();
            format!("{}=[{}]", dag.nodes[n], next.join(", "))
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// `POST /wfpredict/{name}`.
pub async fn predict(
    core: &Core,
    req: Request<ClientBody>,
    name: &str,
    request_id: &str,
) -> Result<Response<Body>, Error> {
    core.workflow(name)?;
    let (parts, body) = req.into_parts();
    let bytes = body::read_limited(
        body,
        core.config.max_request_size,
        core.config.client_timeout,
    )
    .await?;
    let request = sandbox::Request {
        id: request_id.to_string(),
        headers: handler_headers(&parts.headers, &[]),
        parts: body::parts(&parts.headers, bytes).await?,
    };
    let mut leaves = core.predict_workflow(name, request_id, request).await?;
    if leaves.len() == 1 {
        let (_, out) = leaves.remove(0);
        return leaf_response(out);
    }
    // Several leaves: TorchServe's JSON object of them, by node name.
    let mut object = serde_json::Map::new();
    for (node, out) in leaves {
        let value = serde_json::from_slice(&out.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&out.body).into_owned().into());
        object.insert(node, value);
    }
    Ok(json_response(StatusCode::OK, &object.into()))
}

/// The leaf's output as the answer: its content type, else JSON when it parses as
/// JSON (TorchServe always says JSON), else bytes.
fn leaf_response(out: NodeOutput) -> Result<Response<Body>, Error> {
    let content_type = out.content_type.unwrap_or_else(|| {
        match serde_json::from_slice::<serde::de::IgnoredAny>(&out.body) {
            Ok(_) => "application/json".into(),
            Err(_) => "application/octet-stream".into(),
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .body(full(out.body))
        .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use crate::core::workflow::dag::Dag;

    #[test]
    fn renders_the_dag_as_torchserve_does() {
        let edges = vec![
            ("pre".to_string(), vec!["m1".to_string(), "m2".to_string()]),
            ("m1".to_string(), vec!["join".to_string()]),
            ("m2".to_string(), vec!["join".to_string()]),
        ];
        let dag = Dag::new(&edges).unwrap();
        let text: Vec<String> = (0..dag.nodes.len())
            .filter(|&n| !dag.children[n].is_empty())
            .map(|n| format!("{}={}", dag.nodes[n], dag.children[n].len()))
            .collect();
        assert_eq!(text, ["pre=2", "m1=1", "m2=1"]);
    }
}
