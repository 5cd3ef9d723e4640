//! Results to stdout without a panic when the reader has gone (`kvxfer ... | head`): a closed
//! pipe drops the rest of the output quietly, and the run goes on to write its files.

use std::io::{ErrorKind, Write};

/// Writes to stdout; a closed pipe is ignored, any other failure is said once on stderr.
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() != ErrorKind::BrokenPipe {
            eprintln!("kvxfer: writing to stdout: {e}");
        }
    }
}

/// `print!` to stdout through [`write_fmt`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::report::stdout::write_fmt(format_args!($($t)*))
    };
}

/// `println!` to stdout through [`write_fmt`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::report::stdout::write_fmt(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::report::stdout::write_fmt(format_args!("{}\n", format_args!($($t)*)))
    };
}
