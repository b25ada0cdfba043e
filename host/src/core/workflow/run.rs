//! Running one request through a workflow's graph. TorchServe's data flow: a start
//! node gets the client's request as it came; a node with one parent gets that
//! parent's output as its one part, named `body`; a node with several gets one part
//! per parent, named by the parent's node name. Every node sees the client's headers
//! (less its framing ones, past the start nodes) and [`super::NODE_HEADER`] with its
//! own name. A node's output is its handler's response body and content type.
//!
//! Nodes run as soon as all their parents answered, so independent branches run at
//! once. Each try of a node is bounded by its `timeout-ms`; a try that timed out or
//! found no worker is tried again up to `retry-attempts` times; a node that fails
//! fails the request (the others still running are dropped, which cancels their
//! queued jobs) with the node's name and status. The whole run is bounded by the
//! server's `default_response_timeout`.

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use super::register::reworded;
use super::{Core, Error, NODE_HEADER, NodeKind, Workflow};
use crate::sandbox::{Part, Request, Response};
use crate::worker::{Input, Output};

/// What a node answered.
#[derive(Clone, Debug)]
pub struct NodeOutput {
    pub body: Vec<u8>,
    /// The `content-type` its handler set, if any.
    pub content_type: Option<String>,
}

impl NodeOutput {
    fn from_response(resp: Response) -> NodeOutput {
        let content_type = resp
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone());
        NodeOutput {
            body: resp.body,
            content_type,
        }
    }
}

/// The client's headers a node past the start gets: not those that describe the
/// client's body, which it does not get.
fn passed_on(name: &str) -> bool {
    !matches!(
        name,
        "content-type" | "content-length" | "transfer-encoding" | "content-encoding"
    ) && name != NODE_HEADER
}

impl Core {
    /// Runs `request` through the workflow `name`; the leaves' outputs, in the
    /// specification's order, with their node names.
    pub async fn predict_workflow(
        &self,
        name: &str,
        id: &str,
        request: Request,
    ) -> Result<Vec<(String, NodeOutput)>, Error> {
        let workflow = self.workflow(name)?;
        let total = self.config.default_response_timeout;
        match tokio::time::timeout(total, self.run_graph(&workflow, id, request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "Workflow {name} did not finish within {} s (default_response_timeout)",
                total.as_secs()
            ))),
        }
    }

    async fn run_graph(
        &self,
        wf: &Workflow,
        id: &str,
        request: Request,
    ) -> Result<Vec<(String, NodeOutput)>, Error> {
        let dag = &wf.dag;
        let n = dag.nodes.len();
        let mut outputs: Vec<Option<NodeOutput>> = vec![None; n];
        let mut waiting: Vec<usize> = dag.parents.iter().map(Vec::len).collect();
        let mut running = FuturesUnordered::new();
        for s in dag.starts() {
            let mut req = request.clone();
            req.headers.retain(|(k, _)| k != NODE_HEADER);
            req.headers
                .push((NODE_HEADER.to_string(), dag.nodes[s].clone()));
            running.push(self.run_node(wf, s, id, req));
        }
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(k, _)| passed_on(k))
            .cloned()
            .collect();
        while let Some((node, result)) = running.next().await {
            outputs[node] = Some(result?);
            for &child in &dag.children[node] {
                waiting[child] -= 1;
                if waiting[child] > 0 {
                    continue;
                }
                let parents = &dag.parents[child];
                let parts = parents
                    .iter()
                    .map(|&p| {
                        let out = outputs[p].clone().unwrap_or_else(|| NodeOutput {
                            body: Vec::new(),
                            content_type: None,
                        });
                        Part {
                            name: if parents.len() == 1 {
                                "body".to_string()
                            } else {
                                dag.nodes[p].clone()
                            },
                            content_type: out.content_type,
                            data: out.body,
                        }
                    })
                    .collect();
                let mut headers = headers.clone();
                headers.push((NODE_HEADER.to_string(), dag.nodes[child].clone()));
                let req = Request {
                    id: request.id.clone(),
                    headers,
                    parts,
                };
                running.push(self.run_node(wf, child, id, req));
            }
        }
        Ok(dag
            .leaves()
            .into_iter()
            .map(|l| {
                let out = outputs[l].take().unwrap_or_else(|| NodeOutput {
                    body: Vec::new(),
                    content_type: None,
                });
                (dag.nodes[l].clone(), out)
            })
            .collect())
    }

    /// Runs node `index` on `req`, with its timeout and retries; its index with the
    /// result.
    async fn run_node(
        &self,
        wf: &Workflow,
        index: usize,
        id: &str,
        req: Request,
    ) -> (usize, Result<NodeOutput, Error>) {
        let node = &wf.nodes[index];
        let name = &wf.dag.nodes[index];
        let target = match &node.kind {
            NodeKind::Model(v) => v,
            NodeKind::Function => match &wf.functions {
                Some(f) => f,
                None => {
                    let e = Error::internal(format!(
                        "Workflow node {name} is a function, and the workflow has no handler"
                    ));
                    return (index, Err(e));
                }
            },
        };
        let what = match &node.kind {
            NodeKind::Model(v) => format!("Workflow node {name} (model {})", v.name),
            NodeKind::Function => format!("Workflow node {name} (function)"),
        };
        let timeout = Duration::from_millis(node.settings.timeout_ms);
        let mut attempt = 0;
        let result = loop {
            let call = self.predict(target, id, Input::Request(req.clone()));
            let e = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(Output::Response(resp))) if resp.status < 400 => {
                    break Ok(NodeOutput::from_response(resp));
                }
                Ok(Ok(Output::Response(resp))) => {
                    let e = Error::Prediction {
                        status: resp.status,
                        message: String::from_utf8_lossy(&resp.body).into_owned(),
                    };
                    break Err(e);
                }
                Ok(Ok(Output::Tensors(_))) => {
                    break Err(Error::internal("the model answered tensors to a request"));
                }
                Ok(Err(e)) => e,
                Err(_) => Error::Unavailable(format!(
                    "no answer within timeout-ms ({} ms)",
                    node.settings.timeout_ms
                )),
            };
            // Only a try that found no worker or no time is worth another.
            if matches!(e, Error::Unavailable(_)) && attempt < node.settings.retry_attempts {
                attempt += 1;
                tracing::warn!(
                    "{what}: {e}; try {} of {}",
                    attempt + 1,
                    node.settings.retry_attempts + 1
                );
                continue;
            }
            break Err(e);
        };
        let result = result.map_err(|e| {
            let tries = if attempt > 0 {
                format!(" after {} tries", attempt + 1)
            } else {
                String::new()
            };
            reworded(
                &e,
                format!("{what} failed with status {}{tries}: {e}", e.status()),
            )
        });
        (index, result)
    }
}
