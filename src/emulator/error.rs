//! Why the emulator refused or failed an action; the API maps each variant
//! onto its HTTP status.

use std::sync::Arc;

use crate::fault_injector::BadRequest;

/// Why an action was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// Well-formed but invalid (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// Another action runs on the same database (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// It ran and failed; the cause is kept, and its chain printed.
    #[error("{0:#}")]
    Failed(Arc<anyhow::Error>),
}

impl ActionError {
    /// A refusal saying what is wrong and how to fix it.
    pub fn invalid(msg: impl Into<String>) -> Self {
        ActionError::Invalid(msg.into())
    }

    /// Where the failure of action `what` came from: a line for it, then one
    /// per cause, the outermost first.
    pub fn traceback(&self, what: &str) -> String {
        let mut lines = vec![format!("{what} failed")];
        match self {
            ActionError::Failed(e) => {
                lines.extend(e.chain().map(|c| format!("  caused by: {c}")));
            }
            other => lines.push(format!("  refused: {other}")),
        }
        lines.join("\n")
    }
}

impl From<BadRequest> for ActionError {
    fn from(e: BadRequest) -> Self {
        ActionError::Invalid(e.0)
    }
}

impl From<anyhow::Error> for ActionError {
    fn from(e: anyhow::Error) -> Self {
        ActionError::Failed(Arc::new(e))
    }
}

/// An operation that failed with `e` as its cause.
pub(crate) fn failed(e: impl Into<anyhow::Error>) -> ActionError {
    ActionError::Failed(Arc::new(e.into()))
}

/// An operation that failed for a reason the emulator states.
pub(crate) fn failed_because(msg: impl std::fmt::Display) -> ActionError {
    ActionError::Failed(Arc::new(anyhow::anyhow!("{msg}")))
}
