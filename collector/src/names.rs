//! Project and logstore names, as the log service (Alibaba SLS) defines them.
//!
//! - project: 3-63 characters of `[a-z0-9-]`, starting and ending with a letter or digit;
//! - logstore: 3-63 characters of `[a-z0-9_-]`, starting and ending with a letter or digit.
//!
//! # Guarantees
//! A name that passes is safe as a single path component: no `/`, no `.`, never empty, never `..`.

use thiserror::Error;

/// Why a project or logstore name is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NameError {
    /// The name is shorter than 3 or longer than 63 characters.
    #[error("{kind} name {name:?} must be 3-63 characters long, not {len}")]
    Length {
        /// `project` or `logstore`.
        kind: &'static str,
        /// The refused name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error("{kind} name {name:?} may only hold {allowed}")]
    Character {
        /// `project` or `logstore`.
        kind: &'static str,
        /// The refused name.
        name: String,
        /// The allowed characters, in words.
        allowed: &'static str,
    },
    /// The name starts or ends with something other than a lowercase letter or a digit.
    #[error("{kind} name {name:?} must start and end with a lowercase letter or a digit")]
    Edge {
        /// `project` or `logstore`.
        kind: &'static str,
        /// The refused name.
        name: String,
    },
}

/// Checks a project name.
pub fn validate_project(name: &str) -> Result<(), NameError> {
    validate(name, "project", "lowercase letters, digits and '-'", |c| {
        c == b'-'
    })
}

/// Checks a logstore name.
pub fn validate_logstore(name: &str) -> Result<(), NameError> {
    validate(
        name,
        "logstore",
        "lowercase letters, digits, '-' and '_'",
        |c| c == b'-' || c == b'_',
    )
}

fn validate(
    name: &str,
    kind: &'static str,
    allowed: &'static str,
    extra: impl Fn(u8) -> bool,
) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err(NameError::Length {
            kind,
            name: name.to_owned(),
            len: bytes.len(),
        });
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !bytes.iter().all(|&c| alnum(c) || extra(c)) {
        return Err(NameError::Character {
            kind,
            name: name.to_owned(),
            allowed,
        });
    }
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => Ok(()),
        _ => Err(NameError::Edge {
            kind,
            name: name.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects() {
        for ok in ["abc", "vpc-flow-logs", "a1b", "123", &"a".repeat(63)] {
            assert_eq!(validate_project(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "-ab",
            "ab-",
            "a_b",
            "Abc",
            "a.b",
            "a/b",
            "..a",
            "abc ",
            &"a".repeat(64),
            "ééé",
        ] {
            assert!(validate_project(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logstores() {
        for ok in ["abc", "flow_log", "flow-log_1", &"9".repeat(63)] {
            assert_eq!(validate_logstore(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "_ab",
            "ab_",
            "-ab",
            "a.b",
            "a b",
            "ABC",
            &"a".repeat(64),
        ] {
            assert!(validate_logstore(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let err = validate_project("Bad_Name").unwrap_err().to_string();
        assert!(err.contains("Bad_Name") && err.contains("project"), "{err}");
    }
}
