//! TorchServe's gRPC management service, `ManagementAPIsService`: each RPC is the
//! management API's operation with the same parameters (`frontend::torchserve::
//! management`), and its `msg` is what the REST route answers with, as TorchServe
//! sends it: the JSON of `ListModels` and `DescribeModel`, the text of the others'
//! `{"status": TEXT}`. A field left at its proto3 default (0, "") is a parameter not given:
//! the operation's default applies (`synchronous` is a plain bool: false unless set,
//! as in TorchServe's gRPC).

use tonic::{Request, Response, Status};

use super::proto::ts_management::management_ap_is_service_server::ManagementApIsService;
use super::proto::ts_management::{
    DescribeModelRequest, ListModelsRequest, ManagementResponse, RegisterModelRequest,
    ScaleWorkerRequest, SetDefaultRequest, UnregisterModelRequest,
};
use super::status::status;
use crate::core::Error;
use crate::frontend::torchserve::management::{ManagementApi, Operation, Params};

/// The service.
pub struct Management {
    api: ManagementApi,
}

impl Management {
    pub fn new(api: ManagementApi) -> Management {
        Management { api }
    }

    async fn run(
        &self,
        op: Operation<'_>,
        params: Params,
    ) -> Result<Response<ManagementResponse>, Status> {
        let (_, body) = self.api.run(op, params).await.map_err(status)?;
        let msg = match body.get("status").and_then(|s| s.as_str()) {
            Some(text) if body.as_object().is_some_and(|o| o.len() == 1) => text.to_string(),
            _ => serde_json::to_string_pretty(&body).unwrap_or_default(),
        };
        Ok(Response::new(ManagementResponse { msg }))
    }
}

/// The parameters given: numbers other than 0, strings other than "".
#[derive(Default)]
struct Given(Params);

impl Given {
    fn int(mut self, key: &str, v: i32) -> Given {
        if v != 0 {
            self.0.insert(key.into(), v.to_string());
        }
        self
    }

    fn text(mut self, key: &str, v: &str) -> Given {
        if !v.is_empty() {
            self.0.insert(key.into(), v.to_string());
        }
        self
    }

    fn flag(mut self, key: &str, v: bool) -> Given {
        self.0.insert(key.into(), v.to_string());
        self
    }
}

fn version(v: &str) -> Option<&str> {
    Some(v).filter(|v| !v.is_empty())
}

fn model_name(name: &str) -> Result<&str, Status> {
    match name {
        "" => Err(status(Error::invalid("model_name is required"))),
        name => Ok(name),
    }
}

#[tonic::async_trait]
impl ManagementApIsService for Management {
    async fn describe_model(
        &self,
        req: Request<DescribeModelRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let r = req.into_inner();
        let op = Operation::Describe {
            name: model_name(&r.model_name)?,
            version: version(&r.model_version),
        };
        self.run(op, Params::new()).await
    }

    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let r = req.into_inner();
        let params = Given::default()
            .int("limit", r.limit)
            .int("next_page_token", r.next_page_token);
        self.run(Operation::List, params.0).await
    }

    async fn register_model(
        &self,
        req: Request<RegisterModelRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let r = req.into_inner();
        // An empty `url` is none given (proto3 cannot tell them apart): refused as
        // missing, as TorchServe's gRPC does.
        let params = Given::default()
            .text("url", &r.url)
            .int("batch_size", r.batch_size)
            .text("handler", &r.handler)
            .int("initial_workers", r.initial_workers)
            .int("max_batch_delay", r.max_batch_delay)
            .text("model_name", &r.model_name)
            .int("response_timeout", r.response_timeout)
            .text("runtime", &r.runtime)
            .flag("synchronous", r.synchronous)
            .int("startup_timeout", r.startup_timeout);
        self.run(Operation::Register, params.0).await
    }

    async fn scale_worker(
        &self,
        req: Request<ScaleWorkerRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let r = req.into_inner();
        let params = Given::default()
            .int("min_worker", r.min_worker)
            .int("max_worker", r.max_worker)
            .flag("synchronous", r.synchronous);
        let op = Operation::Scale {
            name: model_name(&r.model_name)?,
            version: version(&r.model_version),
        };
        self.run(op, params.0).await
    }

    async fn set_default(
        &self,
        req: Request<SetDefaultRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let r = req.into_inner();
        let Some(v) = version(&r.model_version) else {
            return Err(status(Error::invalid("model_version is required")));
        };
        let op = Operation::SetDefault {
            name: model_name(&r.model_name)?,
            version: v,
        };
        self.run(op, Params::new()).await
    }

    async fn unregister_model(
        &self,
        req: Request<UnregisterModelRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let r = req.into_inner();
        let op = Operation::Unregister {
            name: model_name(&r.model_name)?,
            version: version(&r.model_version),
        };
        self.run(op, Params::new()).await
    }
}
