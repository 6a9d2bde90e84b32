//! Shared by the fuzz targets and `seeds` (which writes their starting
//! corpora).

pub mod engine;
