//! gRPC service implementations, one file per service.

mod admin;
mod kv;
mod replica;

pub(crate) use admin::AdminService;
pub(crate) use kv::KvService;
pub(crate) use replica::ReplicaService;

/// `UNIMPLEMENTED` for an RPC whose issue has not landed, naming what is
/// missing so a caller knows it is not a bug in their request.
fn not_yet(rpc: &str, missing: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("{rpc} is not implemented yet: it needs {missing}"))
}
