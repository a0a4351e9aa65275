//! Sans-IO protocol engines.
