-- Room checks through the token-sidecar daemon; a drop-in for Jitsi's mod_token_verification.
-- Load it on the MUC component. The rules of the parent host (the component's host without its
-- first label) apply; admins, the allowlist, visitor nodes (s2sin) and recorders pass unchecked.
-- A join is judged by what the session got at login, as Jitsi's is: its token's claims, never its
-- age (a session outlives its token).

local st = require "util.stanza";
local jid = require "util.jid";
local sidecar = module:require "token_sidecar";

local host = module.host;
local value, fingerprint, UNAVAILABLE = sidecar.value, sidecar.fingerprint, sidecar.UNAVAILABLE;
local JITMEET = "http://jitsi.org/jitmeet";

local parent = host:match("^[^.]+%.(.+)$");
if not parent then
	module:log("error", "cannot derive the parent host of %s; every join needing a room check is refused", host);
end

local measure_success = module:measure("success", "counter");
local measure_fail = module:measure("fail", "counter");
local measure_unavailable = module:measure("unavailable", "counter");

local require_token_for_moderation, allowlist, admins, recorder_prefixes;
local service = sidecar.attach(parent, parent and module:context(parent), function ()
	require_token_for_moderation = module:get_option_boolean("token_verification_require_token_for_moderation");
	allowlist = module:get_option_set("token_verification_allowlist", {});
	admins = module:get_option_inherited_set("admins", {}) / jid.prep;
	recorder_prefixes = module:get_option_inherited_set("recorder_prefixes",
		{ "recorder@recorder.", "jibria@recorder.", "jibrib@recorder." });
end);

local function is_admin(user_jid)
	return admins:contains(jid.bare(user_jid));
end

-- Who joins without a room check. Jitsi also lets through presences that carry a jigasi initiator,
-- the transcriber feature or a SIP-jibri email; any client can write those, so here they count
-- only for admins and allowlisted senders, who pass anyway (docs/COMPATIBILITY.md).
local function bypasses(session, user_jid)
	if is_admin(user_jid) then return true; end
	local bare, domain = jid.bare(user_jid), select(2, jid.split(user_jid));
	if allowlist:contains(domain) or allowlist:contains(bare) or session.type == "s2sin" then return true; end
	for prefix in recorder_prefixes do
		if user_jid:sub(1, #prefix) == prefix then return true; end
	end
	return false;
end

local function refuse(session, stanza, kind, condition, text, jitmeet)
	local reply = st.error_reply(stanza, kind, condition, text);
	if type(jitmeet) == "string" and jitmeet:match("^[a-z][a-z%-]*$") then
		reply:tag(jitmeet, { xmlns = JITMEET }):up();
	end
	session.send(reply);
	return true; -- stops the join
end

-- What the login set on the session, for a daemon that no longer remembers the login (it was
-- restarted, or forgot it): the fields Jitsi's own room check reads, and the id of context.user,
-- which (else sub) names the user a revocation may have shut out.
local function login_fields(session)
	if session.auth_token == nil then return nil; end -- a session without a token
	local user = session.jitsi_meet_context_user;
	return {
		jitsi_meet_room = session.jitsi_meet_room, jitsi_meet_domain = session.jitsi_meet_domain,
		jitsi_meet_context_room = session.jitsi_meet_context_room, jitsi_meet_str_tenant = session.jitsi_meet_str_tenant,
		jitsi_meet_context_user = type(user) == "table" and user.id ~= nil and { id = user.id } or nil,
	};
end

-- Returns nil to let the join go on, true when it was refused (and answered).
local function check(session, stanza, room, exists)
	local user_jid = stanza.attr.from;
	if not user_jid or bypasses(session, user_jid) then return nil; end
	if not parent then
		return refuse(session, stanza, "cancel", "internal-server-error", "room checks are not configured");
	end
	local flag = exists and room and room._data and room._data.allowUnauthenticatedAccess;
	if type(flag) ~= "boolean" then flag = nil; end
	local reply, why = service.call({
		op = "room", host = parent, room = jid.bare(stanza.attr.to), prefix = session.jitsi_web_query_prefix or "",
		token_sha256 = session.token_sidecar_sha256, session = login_fields(session),
		room_exists = exists, allow_unauthenticated_access = flag,
	});
	if not reply then
		module:log("error", "join of %s to %s: %s: %s", user_jid, stanza.attr.to, UNAVAILABLE, why);
		measure_unavailable(1);
		return refuse(session, stanza, "wait", "service-unavailable", UNAVAILABLE);
	end
	if reply.ok == true then
		if reply.tenant_mismatch == true then session.jitsi_meet_tenant_mismatch = true; end
		measure_success(1);
		return nil;
	end
	local detail = value(reply.detail);
	module:log("warn", "token %s not allowed to join %s: %s%s", fingerprint(session.auth_token), stanza.attr.to,
		tostring(value(reply.text)), (detail and detail ~= "") and (" (" .. tostring(detail) .. ")") or "");
	measure_fail(1);
	return refuse(session, stanza, "cancel", reply.condition, reply.text, value(reply.jitmeet));
end

module:hook("muc-room-pre-create", function (event)
	return check(event.origin, event.stanza, event.room, false);
end, 99);

module:hook("muc-occupant-pre-join", function (event)
	return check(event.origin, event.stanza, event.room, true);
end, 99);

-- token_verification_require_token_for_moderation: guests may not send the room config form.
local function owner_query(event)
	local session, stanza = event.origin, event.stanza;
	if not require_token_for_moderation or is_admin(stanza.attr.from) then return; end
	if not session.auth_token or not session.jitsi_meet_room then
		session.send(st.error_reply(stanza, "cancel", "not-allowed", "Room modification disabled for guests"));
		return true;
	end
end
module:hook("iq-set/bare/http://jabber.org/protocol/muc#owner:query", owner_query, -1);
module:hook("iq-set/host/http://jabber.org/protocol/muc#owner:query", owner_query, -1);
