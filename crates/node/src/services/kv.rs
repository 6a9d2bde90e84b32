//! `strata.v1.KV`: the public key-value API, served by the coordinator.

use std::sync::Arc;

use strata_proto::v1::{
    self, BatchGetRequest, BatchGetResponse, BatchGetResult, BatchWriteRequest, BatchWriteResponse,
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, ItemError, PutRequest, PutResponse,
    Sibling, WriteResult, batch_get_result, kv_server::Kv, write_op, write_result,
};
use tonic::{Request, Response, Status};

use crate::coordinator::{Coordinator, ReadOutcome, encode_context};

/// Coordinates client requests.
#[derive(Debug)]
pub(crate) struct KvService {
    coordinator: Arc<Coordinator>,
}

impl KvService {
    pub(crate) fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    async fn get_one(
        &self,
        key: Vec<u8>,
        consistency: Option<&v1::Consistency>,
    ) -> Result<GetResponse, Status> {
        let ReadOutcome { siblings, answered } = self.coordinator.read(key, consistency).await?;
        Ok(GetResponse {
            // Deletes are versions too; they are reported only through the
            // context (which covers them), not as values.
            siblings: siblings
                .live_values()
                .map(|value| Sibling {
                    value: value.to_vec().into(),
                    tombstone: false,
                })
                .collect(),
            context: encode_context(&siblings.context()).into(),
            replicas_answered: answered,
        })
    }

    async fn put_one(
        &self,
        r: PutRequest,
        fallback: Option<&v1::Consistency>,
    ) -> Result<PutResponse, Status> {
        let consistency = r.consistency.as_ref().or(fallback);
        let outcome = self
            .coordinator
            .write(
                r.key.to_vec(),
                Some(r.value.to_vec()),
                &r.context,
                consistency,
            )
            .await?;
        Ok(PutResponse {
            context: outcome.context.into(),
            replicas_acked: outcome.acked,
        })
    }

    async fn delete_one(
        &self,
        r: DeleteRequest,
        fallback: Option<&v1::Consistency>,
    ) -> Result<DeleteResponse, Status> {
        let consistency = r.consistency.as_ref().or(fallback);
        let outcome = self
            .coordinator
            .write(r.key.to_vec(), None, &r.context, consistency)
            .await?;
        Ok(DeleteResponse {
            context: outcome.context.into(),
            replicas_acked: outcome.acked,
        })
    }
}

fn item_error(status: &Status) -> ItemError {
    ItemError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.get_one(r.key.to_vec(), r.consistency.as_ref()).await?,
        ))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Ok(Response::new(
            self.put_one(request.into_inner(), None).await?,
        ))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(
            self.delete_one(request.into_inner(), None).await?,
        ))
    }

    async fn batch_get(
        &self,
        request: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        let r = request.into_inner();
        let mut results = Vec::with_capacity(r.keys.len());
        for key in r.keys {
            let outcome = match self.get_one(key.to_vec(), r.consistency.as_ref()).await {
                Ok(response) => batch_get_result::Outcome::Response(response),
                Err(status) => batch_get_result::Outcome::Error(item_error(&status)),
            };
            results.push(BatchGetResult {
                key,
                outcome: Some(outcome),
            });
        }
        Ok(Response::new(BatchGetResponse { results }))
    }

    async fn batch_write(
        &self,
        request: Request<BatchWriteRequest>,
    ) -> Result<Response<BatchWriteResponse>, Status> {
        let r = request.into_inner();
        let fallback = r.consistency.as_ref();
        let mut results = Vec::with_capacity(r.ops.len());
        for op in r.ops {
            let outcome = match op.op {
                Some(write_op::Op::Put(put)) => self
                    .put_one(put, fallback)
                    .await
                    .map(|p| (p.context, p.replicas_acked)),
                Some(write_op::Op::Delete(delete)) => self
                    .delete_one(delete, fallback)
                    .await
                    .map(|d| (d.context, d.replicas_acked)),
                None => Err(Status::invalid_argument(
                    "batch op has neither put nor delete",
                )),
            };
            results.push(match outcome {
                Ok((context, acked)) => WriteResult {
                    outcome: Some(write_result::Outcome::Context(context)),
                    replicas_acked: acked,
                },
                Err(status) => WriteResult {
                    outcome: Some(write_result::Outcome::Error(item_error(&status))),
                    replicas_acked: 0,
                },
            });
        }
        Ok(Response::new(BatchWriteResponse { results }))
    }
}
