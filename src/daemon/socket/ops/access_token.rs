//! `access_token`: reserved for participant access tokens.

use serde_json::Value;

use crate::protocol::{ErrorCode, Reply};

pub(super) fn access_token(id: Value) -> Reply {
    Reply::error(
        id,
        ErrorCode::NotImplemented,
        "access_token is not implemented yet (reserved for participant access tokens)",
    )
}
