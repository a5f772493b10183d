//! An error and its causes on one line (`a: b: c`), for logs and the command line: a library's own
//! message alone rarely says what went wrong (reqwest's "error sending request", say).

use std::error::Error;

/// `error`, then each cause under it not already part of the text, joined by `: `.
pub fn cause_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_follow_on_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let e = crate::daemon::BindError::Io {
            path: "/run/x.sock".into(),
            action: "bind",
            source: io,
        };
        assert_eq!(cause_chain(&e), "/run/x.sock: bind: Permission denied");
        let start = crate::daemon::StartError::Bind(e);
        assert_eq!(cause_chain(&start), "/run/x.sock: bind: Permission denied");
    }
}
