//! `OPTIONS /`: the OpenAPI 3 descriptions of the inference and management APIs, as
//! TorchServe serves them, so that clients can be generated from a running server.

use serde_json::{Value, json};

fn param(name: &str, location: &str, required: bool, kind: &str, description: &str) -> Value {
    json!({"in": location, "name": name, "required": required, "schema": {"type": kind}, "description": description})
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn status_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}})
}

fn components() -> Value {
    json!({"schemas": {
        "Error": {"type": "object", "required": ["code", "type", "message"], "properties": {
            "code": {"type": "integer"}, "type": {"type": "string"}, "message": {"type": "string"}}},
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    }})
}

fn info(title: &str) -> Value {
    json!({"title": title, "description": "wasmserve: TorchServe-compatible model serving with WebAssembly handlers", "version": env!("CARGO_PKG_VERSION")})
}

/// The inference API's description.
pub fn inference() -> Value {
    let model = param("model_name", "path", true, "string", "Name of the model.");
    let version = param(
        "model_version",
        "path",
        true,
        "string",
        "Version of the model.",
    );
    let predict = |params: Vec<Value>| {
        json!({
            "description": "Runs the model's handler and model on the request body (raw, multipart or url-encoded form).",
            "parameters": params,
            "requestBody": {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
                "200": {"description": "The handler's response.", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "400": error_response("The handler refused the input."),
                "404": error_response("Model or version not found."),
                "413": error_response("The body is larger than max_request_size."),
                "503": error_response("No worker, full queue, or the model's forward failed."),
            }
        })
    };
    json!({
        "openapi": "3.0.1",
        "info": info("wasmserve inference API"),
        "paths": {
            "/": {"options": {"operationId": "apiDescription", "description": "This description.",
                "responses": {"200": {"description": "OpenAPI 3 description", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/ping": {"get": {"operationId": "ping", "description": "Health of the server.",
                "responses": {"200": status_response("Healthy"), "500": status_response("Unhealthy")}}},
            "/predictions/{model_name}": {"post": predict(vec![model.clone()])},
            "/predictions/{model_name}/{model_version}": {"post": predict(vec![model, version])},
            "/wfpredict/{workflow_name}": {"post": {"operationId": "workflowPredict",
                "description": "Runs the request through the workflow's DAG; the leaf's output (several leaves: a JSON object of them by node name).",
                "parameters": [param("workflow_name", "path", true, "string", "Name of the workflow.")],
                "requestBody": {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": {"description": "The leaf's output.", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                    "404": error_response("Workflow not found."), "500": error_response("A node failed (its name and status in the message).")}}},
        },
        "components": components(),
    })
}

/// The management API's description.
pub fn management() -> Value {
    let model = param("model_name", "path", true, "string", "Name of the model.");
    let version = param(
        "model_version",
        "path",
        true,
        "string",
        "Version of the model, or `all` to describe every version.",
    );
    let q = |name: &str, kind: &str, d: &str| param(name, "query", false, kind, d);
    let describe = |params: Vec<Value>| {
        json!({"description": "Describes model versions: settings, workers, queue.", "parameters": params,
            "responses": {"200": {"description": "A JSON array of model descriptions", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                "404": error_response("Model or version not found.")}})
    };
    let scale = |params: Vec<Value>| {
        let mut p = params;
        p.extend([
            q(
                "min_worker",
                "integer",
                "Workers to keep running (default 1).",
            ),
            q(
                "max_worker",
                "integer",
                "Most workers (default min_worker).",
            ),
            q(
                "synchronous",
                "boolean",
                "Wait for the workers (default false).",
            ),
        ]);
        json!({"description": "Scales the workers of a version.", "parameters": p,
            "responses": {"200": status_response("Scaled."), "202": status_response("Scaling in the background."),
                "400": error_response("Bad parameters."), "404": error_response("Model or version not found.")}})
    };
    let unregister = |params: Vec<Value>| {
        json!({"description": "Unregisters a version after its queued requests (needs enable_model_api).", "parameters": params,
            "responses": {"200": status_response("Unregistered."), "400": error_response("The default version cannot go while others stay."),
                "404": error_response("Model or version not found."), "405": error_response("Model API disabled.")}})
    };
    json!({
        "openapi": "3.0.1",
        "info": info("wasmserve management API"),
        "paths": {
            "/": {"options": {"operationId": "apiDescription", "description": "This description.",
                "responses": {"200": {"description": "OpenAPI 3 description", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/models": {
                "get": {"operationId": "listModels", "description": "Lists models by name, with paging.",
                    "parameters": [q("limit", "integer", "Page size, 0 to 100 (default 100)."), q("next_page_token", "string", "Token from the previous page.")],
                    "responses": {"200": {"description": "A page of models", "content": {"application/json": {"schema": {"type": "object"}}}}}},
                "post": {"operationId": "registerModel", "description": "Registers a model archive (needs enable_model_api). Parameters may also come as a JSON body.",
                    "parameters": [
                        param("url", "query", true, "string", "A .mar in the model store, or a file:// path."),
                        q("model_name", "string", "Name to serve it under (default: the manifest's)."),
                        q("batch_size", "integer", "Batch size."),
                        q("max_batch_delay", "integer", "Batching delay in ms."),
                        q("initial_workers", "integer", "Workers to start."),
                        q("synchronous", "boolean", "Wait for the workers (default true)."),
                        q("response_timeout", "integer", "Seconds before a request times out."),
                    ],
                    "responses": {"200": status_response("Registered."), "202": status_response("Workers starting in the background."),
                        "400": error_response("Bad parameters or archive."), "404": error_response("Archive not found."),
                        "405": error_response("Model API disabled."), "409": error_response("That version is already registered.")}}
            },
            "/models/{model_name}": {"get": describe(vec![model.clone()]), "put": scale(vec![model.clone()]), "delete": unregister(vec![model.clone()])},
            "/models/{model_name}/{model_version}": {"get": describe(vec![model.clone(), version.clone()]), "put": scale(vec![model.clone(), version.clone()]), "delete": unregister(vec![model.clone(), version.clone()])},
            "/workflows": {
                "get": {"operationId": "listWorkflows", "description": "Lists workflows by name, with paging.",
                    "parameters": [q("limit", "integer", "Page size, 0 to 100 (default 100)."), q("next_page_token", "string", "Token from the previous page.")],
                    "responses": {"200": {"description": "A page of workflows", "content": {"application/json": {"schema": {"type": "object"}}}}}},
                "post": {"operationId": "registerWorkflow", "description": "Registers a workflow archive (.war) and its models as <workflow>__<node> (needs enable_model_api).",
                    "parameters": [param("url", "query", true, "string", "A .war in the model store, or a file:// path."),
                        q("workflow_name", "string", "Name to serve it under (default: the manifest's).")],
                    "responses": {"200": status_response("Registered."), "400": error_response("Bad archive or specification."),
                        "404": error_response("Archive or model archive not found."), "405": error_response("Model API disabled."),
                        "409": error_response("That workflow or one of its models is already registered.")}}
            },
            "/workflows/{workflow_name}": {
                "get": {"operationId": "describeWorkflow", "description": "Describes a workflow.",
                    "parameters": [param("workflow_name", "path", true, "string", "Name of the workflow.")],
                    "responses": {"200": {"description": "A JSON array of one description", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                        "404": error_response("Workflow not found.")}},
                "delete": {"operationId": "unregisterWorkflow", "description": "Unregisters a workflow and its models (needs enable_model_api).",
                    "parameters": [param("workflow_name", "path", true, "string", "Name of the workflow.")],
                    "responses": {"200": status_response("Unregistered."), "404": error_response("Workflow not found."), "405": error_response("Model API disabled.")}}
            },
            "/models/{model_name}/{model_version}/set-default": {"put": {"operationId": "setDefault", "description": "Makes a version the default.",
                "parameters": [model, version],
                "responses": {"200": status_response("Default set."), "404": error_response("Model or version not found.")}}},
        },
        "components": components(),
    })
}

/// The description of a listener that serves both APIs (`inference_address` and
/// `management_address` the same, as KServe's sample configuration has them): every
/// path of both, as TorchServe lists them for such a port.
pub fn both() -> Value {
    let mut all = inference();
    let management = management();
    if let (Some(paths), Some(more)) = (
        all["paths"].as_object_mut(),
        management["paths"].as_object(),
    ) {
        for (path, item) in more {
            paths.entry(path.clone()).or_insert_with(|| item.clone());
        }
    }
    all["info"] = info("wasmserve inference and management APIs");
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_holds_every_path_of_each() {
        let both = both();
        for one in [inference(), management()] {
            for path in one["paths"].as_object().unwrap().keys() {
                assert!(both["paths"].get(path).is_some(), "{path}");
            }
        }
    }
}
