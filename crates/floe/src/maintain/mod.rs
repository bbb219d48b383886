//! Table maintenance: the engine behind `floe expire` (which snapshots go, which files only they
//! reach), `floe compact` (which files each partition rewrites), `floe remove-orphans` (files no
//! metadata references) and `floe inspect` (what a table
//! holds). The builders are in `ops/`.

pub mod compact;
pub mod expire;
pub mod inspect;
pub mod orphans;
