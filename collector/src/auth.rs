//! Who may call what: a bearer token (`authorization: Bearer <token>`, compared in constant
//! time) or a client certificate the TLS layer verified against `tls_client_ca`.
//!
//! Each listener has its own [`Policy`]: on TCP reports always need credentials and queries
//! too unless `require_auth_for_queries = false`; on the local Unix socket (mode 0600, so only
//! its owner can connect) reports need the token when one is configured, queries need nothing.

use std::{path::Path, sync::Arc};

use tonic::{Request, Status};

/// Errors reading the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("reading the token file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("the token file {path} is empty")]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// A shared secret (never printed).
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token in `path` (surrounding whitespace removed).
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Token(Arc::from(t.as_bytes())))
    }

    /// A token from its value.
    pub fn new(value: &str) -> Token {
        Token(Arc::from(value.as_bytes()))
    }

    /// Whether `candidate` is the token; the time taken does not depend on where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(&self.0, candidate)
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    std::hint::black_box(diff) == 0
}

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `Report`.
    Report,
    /// Queries: `QueryEvents`, `StreamEvents`, `ListContainers`, `GetStatus`.
    Query,
}

/// The credentials a listener demands.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The accepted bearer token, if any.
    pub token: Option<Token>,
    /// A verified client certificate is enough.
    pub accept_client_cert: bool,
    /// Reports need credentials.
    pub reports: bool,
    /// Queries need credentials.
    pub queries: bool,
}

impl Policy {
    /// Ok when the request may do `access`; `Unauthenticated` otherwise.
    pub fn check<T>(&self, req: &Request<T>, access: Access) -> Result<(), Status> {
        let required = match access {
            Access::Report => self.reports,
            Access::Query => self.queries,
        };
        if !required {
            return Ok(());
        }
        if self.accept_client_cert && req.peer_certs().is_some_and(|c| !c.is_empty()) {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(Status::unauthenticated("a client certificate is required"));
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => Err(Status::unauthenticated(
                "missing credentials: send `authorization: Bearer <token>`",
            )),
            Some(t) if token.matches(t.trim().as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated("invalid token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks() {
        let p = Policy {
            token: Some(Token::new("s3cret")),
            accept_client_cert: false,
            reports: true,
            queries: false,
        };
        let mut req = Request::new(());
        assert_eq!(
            p.check(&req, Access::Report).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
        assert!(p.check(&req, Access::Query).is_ok());
        req.metadata_mut().insert(
            "authorization",
            "Bearer s3cre".parse().expect("ascii header"),
        );
        assert!(p.check(&req, Access::Report).is_err());
        req.metadata_mut().insert(
            "authorization",
            "Bearer s3cret".parse().expect("ascii header"),
        );
        assert!(p.check(&req, Access::Report).is_ok());
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(constant_time_eq(b"abc", b"abc"));
    }
}
