//! TorchServe's REST APIs over the core: the inference API's routes
//! ([`inference`]), the management API's ([`management`]), their OpenAPI
//! descriptions ([`openapi`]) and TorchServe's error body ([`error`]).

pub mod error;
pub mod inference;
pub mod management;
pub mod openapi;
