//! `strata.v1.KV`: the public key-value API.

use strata_proto::v1::{
    BatchGetRequest, BatchGetResponse, BatchWriteRequest, BatchWriteResponse, DeleteRequest,
    DeleteResponse, GetRequest, GetResponse, PutRequest, PutResponse, kv_server::Kv,
};
use tonic::{Request, Response, Status};

use super::not_yet;

const COORDINATOR: &str = "the coordinator (cluster request-path issue)";

/// Coordinates client requests over the ring.
#[derive(Debug, Default)]
pub(crate) struct KvService;

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Err(not_yet("KV.Get", COORDINATOR))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Err(not_yet("KV.Put", COORDINATOR))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(not_yet("KV.Delete", COORDINATOR))
    }

    async fn batch_get(
        &self,
        _: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        Err(not_yet("KV.BatchGet", COORDINATOR))
    }

    async fn batch_write(
        &self,
        _: Request<BatchWriteRequest>,
    ) -> Result<Response<BatchWriteResponse>, Status> {
        Err(not_yet("KV.BatchWrite", COORDINATOR))
    }
}
