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
                let t = t.trim();
                // HTTP also carries bytes over 0x7F (obs-text), which no
                // token of ours holds: refused here rather than as an
                // unknown token by the node.
                if !t.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                    return Err(Error::InvalidToken);
                }
                let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {t}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor as _;

    fn authorization(credentials: &mut Credentials) -> Option<String> {
        let request = credentials
            .call(tonic::Request::new(()))
            .expect("the interceptor never refuses");
        request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().expect("ascii").to_owned())
    }

    #[test]
    fn the_token_goes_in_the_authorization_header_and_never_in_debug() {
        let mut credentials = Credentials::new(Some(" s3cret-token \n")).expect("valid");
        assert_eq!(
            authorization(&mut credentials).as_deref(),
            Some("Bearer s3cret-token"),
            "trimmed, as read from a file"
        );
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(
            authorization(&mut Credentials::new(None).expect("none")),
            None
        );
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_before_any_request() {
        for bad in ["two\nlines", "tab\u{7f}del", "caf\u{e9}"] {
            assert!(
                matches!(Credentials::new(Some(bad)), Err(Error::InvalidToken)),
                "{bad:?}"
            );
        }
    }
}
