//! Errors and exit codes: 0 ok, 1 error, 2 usage.

use std::fmt;
use std::process::ExitCode;

/// The command line asked for something that cannot be done (exit code 2).
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A gRPC error from the sensor, as `code: message`.
pub fn grpc(status: &tonic::Status) -> anyhow::Error {
    grpc_from("the sensor", status)
}

/// A gRPC error from `peer` ("the sensor", "the collector"), as `code: message`.
pub fn grpc_from(peer: &str, status: &tonic::Status) -> anyhow::Error {
    let message = if status.message().is_empty() {
        status.code().description()
    } else {
        status.message()
    };
    anyhow::anyhow!("{peer} answered {:?}: {message}", status.code())
}

/// The message of an I/O error without its " (os error N)" suffix.
pub fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// Prints `error` and returns the exit code it deserves.
pub fn report(error: &anyhow::Error) -> ExitCode {
    // A closed stdout (`jobwatch events -f | head`) is the reader's choice, not a failure.
    if error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    eprintln!("jobwatch: {error:#}");
    if error.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_lose_the_errno() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_message(&e), "No such file or directory");
    }

    #[test]
    fn grpc_errors_name_code_and_message() {
        let e = grpc(&tonic::Status::not_found("no container matches \"abc\""));
        assert_eq!(
            e.to_string(),
            "the sensor answered NotFound: no container matches \"abc\""
        );
    }
}
