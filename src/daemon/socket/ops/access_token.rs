//! `access_token`: an access-token IQ, answered with the stanza to send back; and `occupant` /
//! `occupants`: the shim's reports of who is in which room, for introspection.

use serde_json::Value;

use crate::access::issuer::user_id;
use crate::access::stanza::{self, ErrorKind};
use crate::access::{Door, IssueRequest, Issued, IssuerModule, Occupant, Reporter};
use crate::clock::unix_now;
use crate::daemon::issuers::IssuerState;
use crate::daemon::metrics::AccessToken;
use crate::daemon::state::Shared;
use crate::protocol::{ErrorCode, OccupancySync, OccupantEvent, OccupantList, OccupantReport, Reply};

/// What the client is told when the issuer cannot sign; the reason goes to `detail` and the logs.
const UNAVAILABLE: &str = "access tokens are not available on this server";

pub(super) fn access_token(shared: &Shared, id: Value, req: IssueRequest) -> Reply {
    let issuer = match shared.issuers.get(&req.issuer) {
        Some(IssuerState::Ready(issuer)) => issuer,
        other => {
            // Without an issuer, a request that names no door is counted under the muc door.
            let door = req.door.unwrap_or(Door::Muc);
            let detail = match other {
                Some(IssuerState::Refused(problem)) => {
                    format!("the access-token settings of {} were refused: {problem}", req.issuer)
                }
                _ => format!("no access-token issuer is registered for {}", req.issuer),
            };
            tracing::error!(issuer = %req.issuer, "access token refused: {detail}");
            return match stanza::read(&req.stanza, &req.issuer) {
                Ok(iq) => {
                    let kind = ErrorKind::Misconfigured;
                    shared.metrics.access_token(door, AccessToken::Refused(kind));
                    Reply::new(id, false)
                        .with("condition", kind.condition())
                        .with("text", UNAVAILABLE)
                        .with("detail", detail)
                        .with("stanza", iq.error(kind, UNAVAILABLE))
                }
                Err(e) => {
                    shared.metrics.access_token(door, AccessToken::Error);
                    Reply::error(id, ErrorCode::BadRequest, e.to_string())
                }
            };
        }
    };
    let door = req.door.unwrap_or(match issuer.policy().module {
        IssuerModule::AccessToken => Door::Muc,
        IssuerModule::ShortLivedToken => Door::Extdisco,
    });
    let (result, reply) = match issuer.issue(&req, unix_now(), shared.revocations.as_ref()) {
        Ok(Issued::Pass) => (AccessToken::Passed, Reply::new(id, true).with("pass", true)),
        Ok(Issued::Tokens { stanza, occupant }) => {
            // Presence comes from the shim's join and leave reports alone, never from here: a
            // "present" written at issue could land after the holder's leave and outlive it.
            tracing::debug!(room = %occupant.room, jid = %occupant.jid, "access token issued");
            (AccessToken::Issued, Reply::new(id, true).with("stanza", stanza))
        }
        Ok(Issued::Refused {
            kind,
            text,
            stanza,
            revoked,
        }) => (
            if revoked {
                let user = req.session.jitsi_meet_context_user.as_ref().and_then(user_id);
                tracing::info!(
                    issuer = %req.issuer,
                    user = %user.map_or_else(String::new, |u| crate::digest::fingerprint(u.as_bytes())),
                    "access token refused: the user is revoked"
                );
                AccessToken::Revoked
            } else {
                AccessToken::Refused(kind)
            },
            Reply::new(id, false)
                .with("condition", kind.condition())
                .with("text", text)
                .with("stanza", stanza),
        ),
        Err(e) => (
            AccessToken::Error,
            Reply::error(id, ErrorCode::BadRequest, e.to_string()),
        ),
    };
    shared.metrics.access_token(door, result);
    reply
}

pub(super) async fn occupant(shared: &Shared, reporter: Reporter, id: Value, report: OccupantReport) -> Reply {
    let done = match report.event {
        OccupantEvent::Join => {
            let Some(nick) = report.nick else {
                return Reply::error(id, ErrorCode::BadRequest, "occupant: a join needs `nick`");
            };
            let occupant = Occupant {
                room: report.room,
                jid: report.jid,
                nick,
            };
            shared.occupancy.joined(reporter, occupant).await
        }
        OccupantEvent::Leave => shared.occupancy.left(&report.room, &report.jid).await,
    };
    match done {
        Ok(()) => Reply::new(id, true),
        Err(e) => Reply::error(id, ErrorCode::StoreUnavailable, e.to_string()),
    }
}

pub(super) async fn occupants(shared: &Shared, reporter: Reporter, id: Value, sync: OccupancySync) -> Reply {
    let mut all = Vec::new();
    for (room, list) in sync.rooms {
        if let OccupantList::List(list) = list {
            all.extend(list.into_iter().map(|o| Occupant {
                room: room.clone(),
                jid: o.jid,
                nick: o.nick,
            }));
        }
    }
    let count = all.len();
    match shared.occupancy.replace_muc(reporter, &sync.muc, all).await {
        Ok(()) => {
            tracing::info!(muc = %sync.muc, occupants = count, "occupancy re-sent by the shim");
            Reply::new(id, true).with("occupants", count)
        }
        Err(e) => Reply::error(id, ErrorCode::StoreUnavailable, e.to_string()),
    }
}
