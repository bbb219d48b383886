//! Table maintenance: the engine behind `floe expire` (which snapshots go, which files only they
//! reach), `floe compact` (which files each partition rewrites) and `floe inspect` (what a table
//! holds). The builders are in `ops/`.

pub mod compact;
pub mod expire;
pub mod inspect;
