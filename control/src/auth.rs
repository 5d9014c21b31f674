//! Who is calling: bearer tokens from the gRPC metadata (`authorization: Bearer <token>`) mapped to a role by the
//! controller's access file, and which account owns each log-service project.
//!
//! The access file (TOML, `--access FILE`):
//! ```toml
//! [[account]]                 # a tenant
//! id = "1000000001"           # its account id (the account-id of its VPCs, vSwitches and ENIs)
//! tokens = ["tenant-a-token"] # bearer tokens that act as this account
//! projects = ["tenant-a"]     # log-service projects it owns: its flow logs may deliver only there
//!
//! [[admin]]                   # the orchestrator: inventory, hosts' capture sets, any account's flow logs
//! name = "orchestrator"
//! tokens = ["orchestrator-token"]
//!
//! [[host]]                    # a hypervisor's plugin: watches and acknowledges its own capture set only
//! name = "host-a"             # the host name it watches as
//! tokens = ["host-a-token"]
//! ```
//!
//! # Guarantees
//! - Parse, don't validate: [`Access::from_toml`] refuses unknown fields, empty or duplicate tokens (a token maps
//!   to exactly one principal), tokens shorter than [`MIN_TOKEN_LEN`] or holding whitespace, malformed project
//!   names and projects claimed by two accounts. Errors name the file and the entry.
//! - An open controller ([`Access::open`], `--insecure-no-auth`) treats every caller as the admin and accepts any
//!   project: for development and single-tenant labs only.
//! - Token comparison goes through a hash map keyed by the token (SipHash with a per-process random key), so the
//!   time a lookup takes does not reveal how much of a guess matched.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tonic::metadata::MetadataMap;

use crate::state::ProjectOwners;

/// Shortest token accepted in an access file.
pub const MIN_TOKEN_LEN: usize = 8;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The orchestrator (or anyone, on an open controller).
    Admin {
        /// Its name in the access file.
        name: String,
    },
    /// A tenant account.
    Account {
        /// The account id.
        id: String,
    },
    /// A host's plugin.
    Host {
        /// The host name.
        name: String,
    },
}

impl Principal {
    /// How logs name it.
    pub fn describe(&self) -> String {
        match self {
            Principal::Admin { name } => format!("admin {name}"),
            Principal::Account { id } => format!("account {id}"),
            Principal::Host { name } => format!("host {name}"),
        }
    }
}

/// An error loading the access file.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The file could not be read.
    #[error("cannot read access file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("access file {path} is malformed: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// An entry breaks a rule (duplicate token, bad project, ...).
    #[error("access file {path}: {entry}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which entry, e.g. `account 3 (1000)`.
        entry: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a call was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("the call carries no `authorization: Bearer <token>` metadata")]
    MissingToken,
    /// The metadata is not `Bearer <token>`, or the token is unknown.
    #[error("the bearer token is not valid for this controller")]
    InvalidToken,
}

impl AuthError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "Unauthenticated.MissingToken",
            AuthError::InvalidToken => "Unauthenticated.InvalidToken",
        }
    }
}

/// The access policy of a controller.
#[derive(Debug, Clone)]
pub struct Access {
    /// token -> principal; `None` = open controller.
    tokens: Option<HashMap<String, Principal>>,
    projects: ProjectOwners,
}

impl Access {
    /// No authentication: every caller is the admin, any project is accepted.
    pub fn open() -> Self {
        Access {
            tokens: None,
            projects: ProjectOwners::any(),
        }
    }

    /// Whether calls are authenticated.
    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// Loads an access file.
    pub fn load(path: &Path) -> Result<Self, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses the text of an access file (`path` only names it in errors).
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, AccessError> {
        let raw: RawAccess = toml::from_str(text).map_err(|source| AccessError::Malformed {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let invalid = |entry: String, reason: String| AccessError::Invalid {
            path: path.to_owned(),
            entry,
            reason,
        };
        let mut tokens = HashMap::new();
        let mut projects: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |entry: &str, list: Vec<String>, principal: Principal| {
            if list.is_empty() {
                return Err(invalid(entry.to_owned(), "has no tokens".into()));
            }
            for token in list {
                if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid(
                        entry.to_owned(),
                        format!(
                            "a token must be at least {MIN_TOKEN_LEN} printable ASCII characters without whitespace"
                        ),
                    ));
                }
                if tokens.insert(token, principal.clone()).is_some() {
                    return Err(invalid(
                        entry.to_owned(),
                        "a token is used twice in the file".into(),
                    ));
                }
            }
            Ok(())
        };
        for (index, account) in raw.account.into_iter().enumerate() {
            let entry = format!("account {} ({})", index + 1, account.id);
            if account.id.is_empty() || account.id.chars().any(char::is_whitespace) {
                return Err(invalid(
                    entry,
                    "id must be non-empty without whitespace".into(),
                ));
            }
            for project in account.projects {
                if crate::state::check_project_name(&project).is_err() {
                    return Err(invalid(
                        entry,
                        format!("project {project:?} breaks the log service's naming rules"),
                    ));
                }
                if let Some(owner) = projects.insert(project.clone(), account.id.clone()) {
                    return Err(invalid(
                        entry,
                        format!("project {project} is already owned by account {owner}"),
                    ));
                }
            }
            add(
                &entry,
                account.tokens,
                Principal::Account {
                    id: account.id.clone(),
                },
            )?;
        }
        for (index, admin) in raw.admin.into_iter().enumerate() {
            let entry = format!("admin {} ({})", index + 1, admin.name);
            add(&entry, admin.tokens, Principal::Admin { name: admin.name })?;
        }
        for (index, host) in raw.host.into_iter().enumerate() {
            let entry = format!("host {} ({})", index + 1, host.name);
            if host.name.is_empty() || host.name.chars().any(char::is_whitespace) {
                return Err(invalid(
                    entry,
                    "name must be non-empty without whitespace".into(),
                ));
            }
            add(&entry, host.tokens, Principal::Host { name: host.name })?;
        }
        Ok(Access {
            tokens: Some(tokens),
            projects: ProjectOwners::owned(projects),
        })
    }

    /// Who makes a call, from its metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, AuthError> {
        let Some(tokens) = &self.tokens else {
            return Ok(Principal::Admin {
                name: "anonymous".into(),
            });
        };
        let value = metadata
            .get("authorization")
            .ok_or(AuthError::MissingToken)?;
        let text = value.to_str().map_err(|_| AuthError::InvalidToken)?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or(AuthError::InvalidToken)?
            .trim();
        tokens.get(token).cloned().ok_or(AuthError::InvalidToken)
    }

    /// Which account owns each project.
    pub fn projects(&self) -> &ProjectOwners {
        &self.projects
    }
}

/// The access file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    /// Tenants.
    #[serde(default)]
    account: Vec<RawAccount>,
    /// Orchestrators.
    #[serde(default)]
    admin: Vec<RawNamed>,
    /// Hosts.
    #[serde(default)]
    host: Vec<RawNamed>,
}

/// `[[account]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    /// Account id.
    id: String,
    /// Bearer tokens acting as it.
    tokens: Vec<String>,
    /// Log-service projects it owns (default: none, so it cannot create flow logs).
    #[serde(default)]
    projects: Vec<String>,
}

/// `[[admin]]` and `[[host]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamed {
    /// Name (a host's: the host it is).
    name: String,
    /// Bearer tokens acting as it.
    tokens: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/access.example.toml");

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn the_example_file_maps_tokens_to_roles() {
        let access = Access::from_toml(Path::new("access.example.toml"), EXAMPLE).unwrap();
        assert!(!access.is_open());
        assert_eq!(
            access.authenticate(&metadata("Bearer tenant-a-secret-token")),
            Ok(Principal::Account {
                id: "100000000000".into()
            })
        );
        assert_eq!(
            access.authenticate(&metadata("Bearer orchestrator-secret-token")),
            Ok(Principal::Admin {
                name: "orchestrator".into()
            })
        );
        assert_eq!(
            access.authenticate(&metadata("Bearer host-a-secret-token")),
            Ok(Principal::Host {
                name: "host-a".into()
            })
        );
        assert_eq!(
            access.authenticate(&MetadataMap::new()),
            Err(AuthError::MissingToken)
        );
        for bad in [
            "Bearer nope-nope-nope",
            "Basic abc",
            "tenant-a-secret-token",
        ] {
            assert_eq!(
                access.authenticate(&metadata(bad)),
                Err(AuthError::InvalidToken),
                "{bad}"
            );
        }
        assert!(
            Access::open()
                .authenticate(&MetadataMap::new())
                .is_ok_and(|p| matches!(p, Principal::Admin { .. }))
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let cases = [
            (
                "[[account]]\nid = \"1\"\ntokens = [\"short\"]\n",
                "at least 8",
            ),
            (
                "[[account]]\nid = \"1\"\ntokens = [\"token-one-x\"]\n[[admin]]\nname = \"o\"\ntokens = [\"token-one-x\"]\n",
                "used twice",
            ),
            (
                "[[account]]\nid = \"1\"\ntokens = [\"token-one-x\"]\nprojects = [\"p-1\"]\n[[account]]\nid = \"2\"\ntokens = [\"token-two-x\"]\nprojects = [\"p-1\"]\n",
                "already owned by account 1",
            ),
            (
                "[[account]]\nid = \"1\"\ntokens = [\"token-one-x\"]\nprojects = [\"Bad_Project\"]\n",
                "naming rules",
            ),
            ("[[account]]\nid = \"1\"\ntokens = []\n", "has no tokens"),
            (
                "[[host]]\nname = \"\"\ntokens = [\"token-one-x\"]\n",
                "non-empty",
            ),
            ("[[tenant]]\nid = \"1\"\n", "malformed"),
        ];
        for (text, expected) in cases {
            let err = Access::from_toml(Path::new("access.toml"), text).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(message.contains("access.toml"), "{message}");
        }
        assert!(matches!(
            Access::load(Path::new("/nonexistent/access.toml")),
            Err(AccessError::Read { .. })
        ));
    }
}
