//! Client credentials: bearer tokens, each with a role, checked against a
//! file of token hashes (a Kubernetes Secret mounts it). Pure: parsing,
//! hashing and the method → role policy; the layer in `layer.rs` applies
//! it to requests. A token is never stored, logged or counted in a metric:
//! only its SHA-256 is kept, and errors never echo what was sent.

use std::collections::HashMap;
use std::fmt;

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads: `Get`, `BatchGet`, ring, status, progress, ping.
    Read,
    /// Reads and writes: `Put`, `Delete`, `BatchWrite`.
    Write,
    /// Everything, including changes to the cluster: join, decommission,
    /// removenode, cleanup, repair.
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        })
    }
}

/// Why a tokens file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokens file line {line}: {reason}")]
pub struct TokensFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The accepted tokens: SHA-256 (hex) → role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    by_hash: HashMap<String, Role>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, a malformed header, or a token not in the file:
    /// `UNAUTHENTICATED`.
    Unauthenticated,
    /// A valid token whose role is too low: `PERMISSION_DENIED`.
    Forbidden {
        /// The role the method needs.
        needs: Role,
        /// The token's role.
        has: Role,
    },
}

/// SHA-256 of `token`, lowercase hex: what the tokens file holds.
#[must_use]
pub fn hash_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokens {
    /// Parses a tokens file: one `<role> <sha256-hex>` per line (`read`,
    /// `write` or `admin`); blank lines and `#` comments are ignored.
    ///
    /// # Errors
    /// [`TokensFileError`] naming the line; an empty file is an error too
    /// (it would lock every client out).
    pub fn parse(text: &str) -> Result<Self, TokensFileError> {
        let mut by_hash = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: &str| TokensFileError {
                line: n + 1,
                reason: reason.to_owned(),
            };
            let mut fields = line.split_whitespace();
            let (Some(role), Some(hash), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(error("expected `<role> <sha256-hex>`"));
            };
            let role =
                Role::parse(role).ok_or_else(|| error("role must be read, write or admin"))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error(
                    "the second field must be a token's SHA-256 in hex (64 digits): \
                     `strata token-new` prints one",
                ));
            }
            by_hash.insert(hash.to_ascii_lowercase(), role);
        }
        if by_hash.is_empty() {
            return Err(TokensFileError {
                line: 0,
                reason: "no tokens: every client would be refused".to_owned(),
            });
        }
        Ok(Self { by_hash })
    }

    /// How many tokens are accepted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no token is accepted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Checks a request for `path` with `authorization` (the header's
    /// value, if any).
    ///
    /// # Errors
    /// [`Denied`].
    pub fn check(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let Some(needs) = required_role(path) else {
            return Ok(());
        };
        let token = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Unauthenticated)?;
        let has = *self
            .by_hash
            .get(&hash_token(token))
            .ok_or(Denied::Unauthenticated)?;
        if has >= needs {
            Ok(())
        } else {
            Err(Denied::Forbidden { needs, has })
        }
    }
}

/// The role a gRPC method needs (`None`: open, for health probes).
/// Unknown methods need `admin`: nothing is open by omission.
#[must_use]
pub fn required_role(path: &str) -> Option<Role> {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Some(Role::Admin);
    };
    Some(match (service, method) {
        ("grpc.health.v1.Health", _) => return None,
        // Any valid token opens a session; each operation on it is then
        // checked as its unary method (`SessionCredentials`).
        ("strata.v1.KV", "Get" | "BatchGet" | "Session") => Role::Read,
        ("strata.v1.KV", "Put" | "Delete" | "BatchWrite") => Role::Write,
        (
            "strata.v1.Admin",
            "GetRing" | "GetNodeStatus" | "GetClusterStatus" | "GetProgress" | "Ping",
        ) => Role::Read,
        (s, _) if s.starts_with("grpc.reflection.") => Role::Read,
        _ => Role::Admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::parse(&format!(
            "# readers and writers\nread {}\n\nwrite {}\nadmin {}\n",
            hash_token("r-token"),
            hash_token("w-token"),
            hash_token("a-token")
        ))
        .expect("parses")
    }

    #[test]
    fn roles_nest_and_each_method_needs_its_role() {
        let t = tokens();
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        let put = "/strata.v1.KV/Put";
        assert_eq!(
            t.check("/strata.v1.KV/Get", Some(&bearer("r-token"))),
            Ok(())
        );
        assert_eq!(
            t.check(put, Some(&bearer("r-token"))),
            Err(Denied::Forbidden {
                needs: Role::Write,
                has: Role::Read
            })
        );
        assert_eq!(t.check(put, Some(&bearer("w-token"))), Ok(()));
        assert_eq!(t.check(put, Some(&bearer("a-token"))), Ok(()));
        let decommission = "/strata.v1.Admin/Decommission";
        assert!(matches!(
            t.check(decommission, Some(&bearer("w-token"))),
            Err(Denied::Forbidden {
                needs: Role::Admin,
                ..
            })
        ));
        assert_eq!(t.check(decommission, Some(&bearer("a-token"))), Ok(()));
        assert_eq!(
            t.check("/strata.v1.Admin/GetRing", Some(&bearer("r-token"))),
            Ok(())
        );
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
        let t = tokens();
        let path = "/strata.v1.KV/Get";
        for header in [
            None,
            Some(b"".to_vec()),
            Some(b"Bearer ".to_vec()),
            Some(b"Basic r-token".to_vec()),
            Some(b"r-token".to_vec()),
            Some(b"Bearer wrong".to_vec()),
            Some(vec![0xff, 0xfe]),
        ] {
            assert_eq!(
                t.check(path, header.as_deref()),
                Err(Denied::Unauthenticated),
                "{header:?}"
            );
        }
    }

    #[test]
    fn health_is_open_and_unknown_methods_need_admin() {
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(required_role("/strata.v1.KV/Frobnicate"), Some(Role::Admin));
        // Any token opens a session; its operations are checked one by one.
        assert_eq!(required_role("/strata.v1.KV/Session"), Some(Role::Read));
        assert_eq!(required_role("/strata.v1.Replica/Write"), Some(Role::Admin));
        assert_eq!(required_role("nonsense"), Some(Role::Admin));
        for version in ["v1", "v1alpha"] {
            assert_eq!(
                required_role(&format!(
                    "/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
                )),
                Some(Role::Read)
            );
        }
    }

    #[test]
    fn bad_files_say_which_line_and_never_accept_nothing() {
        assert_eq!(Tokens::parse("# nothing\n").expect_err("empty").line, 0);
        assert_eq!(Tokens::parse("read abc\n").expect_err("short hash").line, 1);
        let h = hash_token("x");
        assert_eq!(
            Tokens::parse(&format!("read {h}\nowner {h}\n"))
                .expect_err("role")
                .line,
            2
        );
        assert_eq!(
            Tokens::parse(&format!("read {h} extra\n"))
                .expect_err("fields")
                .line,
            1
        );
        // Upper-case hashes are accepted.
        let t = Tokens::parse(&format!("read {}\n", h.to_ascii_uppercase())).expect("parses");
        assert_eq!(t.check("/strata.v1.KV/Get", Some(b"Bearer x")), Ok(()));
    }
}
