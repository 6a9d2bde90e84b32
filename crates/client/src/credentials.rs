//! The bearer token a client sends with every request.

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::Error;

/// A channel that carries the client's credentials.
pub(crate) type Conn = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <token>` to every request, when the client
/// has a token. (Its `Debug` never shows the token.)
#[derive(Clone)]
pub(crate) struct Credentials {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    pub(crate) fn new(token: Option<&str>) -> Result<Self, Error> {
        let header = token
            .map(|t| {
                let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {}", t.trim())
                        .parse()
                        .map_err(|_| Error::InvalidToken)?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        Ok(Self { header })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}
