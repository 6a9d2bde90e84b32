//! gRPC service implementations, one file per service.

mod admin;
mod kv;
mod replica;
mod session;

pub(crate) use admin::AdminService;
pub(crate) use kv::KvService;
pub(crate) use replica::ReplicaService;
