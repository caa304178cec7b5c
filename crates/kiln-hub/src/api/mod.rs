//! The hub's REST API: the protocol types, the server, build logs and the
//! OpenAPI document.

pub mod logs;
pub mod openapi;
pub mod protocol;
pub mod rebuilds;
pub mod server;
