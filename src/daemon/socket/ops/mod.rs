//! What each op does: one file per op, from a typed request (parsed by [`crate::protocol`]) to
//! its reply.

mod access_token;
mod auth;
mod hello;
mod room;
mod stats;

use serde_json::Value;

use crate::access::Reporter;
use crate::daemon::state::{DAEMON_VERSION, Shared};
use crate::protocol::{self, ErrorCode, Op, Reply, Request};

/// Parses and answers one request line from connection `reporter`, counting the outcome.
pub async fn answer(shared: &Shared, reporter: Reporter, line: &[u8]) -> Reply {
    let (id, parsed) = protocol::parse(line);
    let (op, reply) = match parsed {
        Ok(request) => {
            let op = request.op();
            (op, execute(shared, reporter, id, request).await)
        }
        Err(bad) => {
            tracing::debug!(error = %bad, "bad request");
            (Op::Invalid, Reply::error(id, ErrorCode::BadRequest, bad.to_string()))
        }
    };
    shared.stats.count(op, reply.outcome());
    reply
}

async fn execute(shared: &Shared, reporter: Reporter, id: Value, request: Request) -> Reply {
    match request {
        Request::Hello(hello) => hello::hello(shared, reporter, id, hello),
        Request::Auth(auth) => auth::auth(shared, id, auth).await,
        Request::Room(room) => room::room(shared, id, room).await,
        Request::Ping => Reply::new(id, true).with("daemon", DAEMON_VERSION),
        Request::Stats => stats::stats(shared, id),
        Request::AccessToken(req) => access_token::access_token(shared, id, *req),
        Request::Occupant(report) => access_token::occupant(shared, reporter, id, report).await,
        Request::Occupants(sync) => access_token::occupants(shared, reporter, id, sync).await,
    }
}
