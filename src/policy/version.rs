//! Release versions and their order. They live in the store (which needs the
//! release order to say which production release `latest` means, and may not
//! import policy); re-exported here for the promotion policies.

pub use crate::store::version::*;
