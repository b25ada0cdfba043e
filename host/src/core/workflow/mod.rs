//! Workflows (TorchServe's ensembles): a DAG of model nodes and function nodes over one
//! request. A workflow comes from a `.war` ([`crate::archive::war`]); its models are
//! registered as ordinary models named `<workflow>__<node>` and run through the
//! core's normal predict path (queue, batching, metrics, limits); its function nodes
//! are the exports of one `pipeline` component, loaded as an internal model version
//! of its own (not in the registry), called with the node's name in the
//! [`NODE_HEADER`] request header.
//!
//! - [`spec`]: the specification YAML, and [`dag`]: its graph and checks;
//! - [`register`][register]: registering (every check before anything starts, all or nothing)
//!   and unregistering;
//! - [`run`]: running one request through the graph.

pub mod dag;
pub mod register;
pub mod run;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub use register::WorkflowRegistration;
pub use run::NodeOutput;

use super::{Core, Error};
use crate::archive::war::OpenedWar;
use crate::registry::ModelVersion;
use dag::Dag;
use spec::{NodeSettings, Spec};

/// The request header that tells the function component which node it runs as.
pub const NODE_HEADER: &str = "x-wasmserve-workflow-node";

/// What runs a node.
pub enum NodeKind {
    /// A model of the workflow, registered as `<workflow>__<node>`.
    Model(Arc<ModelVersion>),
    /// An export of the function component.
    Function,
}

/// One node of a registered workflow.
pub struct Node {
    pub kind: NodeKind,
    pub settings: NodeSettings,
}

/// A registered workflow.
pub struct Workflow {
    pub name: String,
    /// Where its archive came from, as given (TorchServe's `workflowUrl`).
    pub url: String,
    pub spec: Spec,
    pub dag: Dag,
    /// Indexed as `dag.nodes`.
    pub nodes: Vec<Node>,
    /// The function component's version (its lanes run the function nodes).
    pub(crate) functions: Option<Arc<ModelVersion>>,
    /// Keeps the extracted archive (the function component's `/model`) alive.
    _war: OpenedWar,
}

impl Workflow {
    /// The names of its models as the registry serves them, in node order.
    pub fn model_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Model(v) => Some(v.name.clone()),
                NodeKind::Function => None,
            })
            .collect()
    }
}

/// The registered workflows, by name.
#[derive(Default)]
pub struct Workflows {
    map: RwLock<BTreeMap<String, Arc<Workflow>>>,
    /// Registrations run one at a time, so that two of one name cannot both pass the
    /// checks.
    registering: tokio::sync::Mutex<()>,
}

impl Workflows {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Workflow>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Workflow>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }
}

/// The name TorchServe registers a workflow's model node under.
pub fn model_name(workflow: &str, node: &str) -> String {
    format!("{workflow}__{node}")
}

impl Core {
    /// The workflow `name`.
    pub fn workflow(&self, name: &str) -> Result<Arc<Workflow>, Error> {
        self.workflows
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::WorkflowNotFound(name.to_string()))
    }

    /// Every workflow, sorted by name.
    pub fn workflow_list(&self) -> Vec<Arc<Workflow>> {
        self.workflows.read().values().cloned().collect()
    }
}
