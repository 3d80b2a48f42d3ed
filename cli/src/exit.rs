//! Exit codes and the one error type that carries one.
//!
//! Every failure a user can act on is a [`Failure`]: a one-line message, an optional hint, and
//! the [`Exit`] class that becomes the process's exit code. Anything else that escapes (a file
//! that cannot be written, say) is reported the same way with exit code 1.

use std::fmt;

/// The documented exit codes (`emsctl --help`, `cli/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for commands, the device accepted.
    Success = 0,
    /// The device rejected the command, the command expired, or another failure.
    Failed = 1,
    /// Bad arguments, configuration, or a request the server refused as invalid (400, 404, 409).
    Usage = 2,
    /// The server could not be reached or refused the credentials (401, 403), TLS failed, or
    /// the server failed (5xx, unreadable answer).
    Connection = 3,
    /// The command was sent but the device did not answer within `--timeout`.
    Timeout = 4,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failure with its exit class, printed as `error: <message>` plus `hint: <hint>`.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, message)
    }

    pub fn connection(message: impl Into<String>) -> Self {
        Failure::new(Exit::Connection, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Prints `err` as one line (plus a hint line) on stderr and returns its exit code.
pub fn report(err: &anyhow::Error) -> Exit {
    match err.downcast_ref::<Failure>() {
        Some(f) => {
            eprintln!("error: {}", one_line(&f.message));
            if let Some(h) = &f.hint {
                eprintln!("hint: {}", one_line(h));
            }
            f.exit
        }
        None => {
            eprintln!("error: {}", one_line(&format!("{err:#}")));
            Exit::Failed
        }
    }
}

/// Keeps a message on one line, whatever a lower layer put in it.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Connection.code(), 3);
        assert_eq!(Exit::Timeout.code(), 4);
    }

    #[test]
    fn messages_are_folded_to_one_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
