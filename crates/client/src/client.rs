//! A connection to a Strata node.

use strata_proto::v1::{
    BatchGetRequest, BatchGetResponse, ClusterStatus, Consistency, DeleteRequest, DeleteResponse,
    GetClusterStatusRequest, GetRequest, GetResponse, GetRingRequest, PingRequest, PingResponse,
    PutRequest, PutResponse, Ring, admin_client::AdminClient, kv_client::KvClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::Error;

/// A client of one Strata node. Cheap to clone: clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    kv: KvClient<Channel>,
    admin: AdminClient<Channel>,
}

impl Client {
    /// Connects to `endpoint` (`http://host:port`, or `host:port`).
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] or [`Error::Connect`].
    pub async fn connect(endpoint: &str) -> Result<Self, Error> {
        let uri = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| Error::InvalidEndpoint {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?
            .connect()
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Self {
            kv: KvClient::new(channel.clone()),
            admin: AdminClient::new(channel),
        })
    }

    /// Round trip to the node without touching storage.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn ping(&mut self, payload: Vec<u8>) -> Result<PingResponse, Error> {
        let request = PingRequest {
            payload: payload.into(),
        };
        Ok(self.admin.ping(request).await?.into_inner())
    }

    /// All siblings of `key` and their context.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn get(
        &mut self,
        key: Vec<u8>,
        consistency: Option<Consistency>,
    ) -> Result<GetResponse, Error> {
        let request = GetRequest {
            key: key.into(),
            consistency,
        };
        Ok(self.kv.get(request).await?.into_inner())
    }

    /// Writes `value`, superseding the siblings `context` covers.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn put(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        context: Vec<u8>,
        consistency: Option<Consistency>,
    ) -> Result<PutResponse, Error> {
        let request = PutRequest {
            key: key.into(),
            value: value.into(),
            context: context.into(),
            consistency,
        };
        Ok(self.kv.put(request).await?.into_inner())
    }

    /// Deletes `key`, superseding the siblings `context` covers.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn delete(
        &mut self,
        key: Vec<u8>,
        context: Vec<u8>,
        consistency: Option<Consistency>,
    ) -> Result<DeleteResponse, Error> {
        let request = DeleteRequest {
            key: key.into(),
            context: context.into(),
            consistency,
        };
        Ok(self.kv.delete(request).await?.into_inner())
    }

    /// Several keys in one round trip; each succeeds or fails alone.
    ///
    /// # Errors
    /// [`Error::Status`] when the whole call fails.
    pub async fn batch_get(
        &mut self,
        keys: Vec<Vec<u8>>,
        consistency: Option<Consistency>,
    ) -> Result<BatchGetResponse, Error> {
        let request = BatchGetRequest {
            keys: keys.into_iter().map(Into::into).collect(),
            consistency,
        };
        Ok(self.kv.batch_get(request).await?.into_inner())
    }

    /// The ring as the node sees it.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn ring(&mut self) -> Result<Ring, Error> {
        Ok(self.admin.get_ring(GetRingRequest {}).await?.into_inner())
    }

    /// Every member's status as the node sees it.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn cluster_status(&mut self) -> Result<ClusterStatus, Error> {
        let request = GetClusterStatusRequest {};
        Ok(self.admin.get_cluster_status(request).await?.into_inner())
    }
}
