//! TorchServe's REST APIs over the core: the inference API's routes
//! ([`inference`]), the management API's ([`management`]), their OpenAPI
//! descriptions ([`openapi`]), TorchServe's error body ([`error`]) and the workflow
//! APIs ([`workflow`]).

pub mod error;
pub mod inference;
pub mod management;
pub mod openapi;
pub mod workflow;
