//! The CLI's results on standard output.
//!
//! `println!` panics when stdout is closed before it writes (`strata get
//! key | head -1`, a pager quit early). Here a closed stdout ends the
//! process at once with success, as `ripgrep` does: the reader has what it
//! wanted. Any other write error ends it with an error line and status 1.
//! `strata dev` instead ignores a closed stdout ([`write_lossy`]): its
//! nodes run on and it still cleans up when stopped.

use std::io::Write as _;

/// Writes `text` to stdout and flushes it; ends the process when stdout
/// is closed or fails.
pub(crate) fn write(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        end(&e);
    }
}

/// Writes `bytes` to stdout as they are; ends the process as [`write`].
pub(crate) fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        end(&e);
    }
}

/// Writes `text` to stdout; a failed write is dropped.
pub(crate) fn write_lossy(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|()| out.flush());
}

fn end(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(1);
}

/// `println!` on [`write`].
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` on [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// `println!` on [`write_lossy`].
macro_rules! outln_lossy {
    ($($arg:tt)*) => {
        $crate::output::write_lossy(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln, outln_lossy};
