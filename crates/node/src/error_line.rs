//! An error and its causes as the one line a binary prints when it gives
//! up. Many errors already include their cause in their own message (a
//! `thiserror` message naming `{source}`), so printing every cause after
//! it (`{:#}`) said the same thing twice; a cause whose text the line
//! already holds is left out.

/// `error: cause: cause ...`, each cause once.
#[must_use]
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening {path}: {source}")]
    struct Opening {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the node")]
    struct Starting(#[source] Opening);

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not hexadecimal");
        let opening = Opening {
            path: "INCARNATION",
            source: io(),
        };
        assert_eq!(error_line(&opening), "opening INCARNATION: not hexadecimal");
        let starting = Starting(Opening {
            path: "INCARNATION",
            source: io(),
        });
        assert_eq!(
            error_line(&starting),
            "starting the node: opening INCARNATION: not hexadecimal"
        );
        assert_eq!(error_line(&io()), "not hexadecimal");
    }
}
