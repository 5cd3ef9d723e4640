//! Results: the `kvxfer.result/v1` schema, atomic files, and terminal tables.

mod atomic;
pub mod export;
pub mod folder;
pub mod kv;
mod output;
pub mod path_lines;
pub mod schema;
pub mod stdout;
pub mod table;

pub use atomic::write_atomic;
pub use output::{destination, write_output, Destination, OutputError};
pub use schema::{Environment, ErrorEntry, ResultDoc, SizeResult, Status, SCHEMA};
