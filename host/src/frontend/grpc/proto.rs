//! The code build.rs generated from `proto/`: messages and service traits, in modules
//! nested as their packages are (the generated code names other packages by relative
//! paths). The frontend's modules use the short names at the bottom.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod org {
    pub mod pytorch {
        pub mod serve {
            pub mod grpc {
                pub mod inference {
                    tonic::include_proto!("org.pytorch.serve.grpc.inference");
                }
                pub mod management {
                    tonic::include_proto!("org.pytorch.serve.grpc.management");
                }
            }
        }
    }
}

pub mod inference {
    tonic::include_proto!("inference");
}

/// KServe v2 / Triton: `inference.GRPCInferenceService`.
pub use inference as kserve;
/// TorchServe's `inference.proto`: `InferenceAPIsService`.
pub use org::pytorch::serve::grpc::inference as ts_inference;
/// TorchServe's `management.proto`: `ManagementAPIsService`.
pub use org::pytorch::serve::grpc::management as ts_management;
