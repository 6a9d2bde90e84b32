//! Who may call what: bearer tokens with roles on the client port
//! (`tokens.rs`: the policy, pure; `layer.rs`: the tower layer that applies
//! it and reloads the file).

mod layer;
mod tokens;

pub use layer::{AuthLayer, LoadError, SessionCredentials, TokenStore};
pub use tokens::{Denied, Role, Tokens, TokensFileError, hash_token, required_role};
