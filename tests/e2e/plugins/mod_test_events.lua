-- Test-only (tests/e2e): watches the five global events a token login fires, steers their
-- results from the token's user id, and reports what a session carries.
--
-- Load on each token VirtualHost (the events are global; each instance looks only at sessions of
-- its own host).
--
-- Steering, by `context.user.id` in the token (or the URL's `room` parameter):
--   room=prefail      pre-jitsi-authentication-fetch-key -> { res = false, "pre-fetch says no" }
--   room=pubkey       pre-jitsi-authentication-fetch-key sets session.public_key to the PEM in the
--                     file named by the option `test_public_key_file`
--   id "banned"       jitsi-access-ban-check -> false ("user is banned")
--   id "custom"       pre-jitsi-authentication -> the user's `name` (becomes the JID's local part)
--   id "postfail"     post-jitsi-authentication -> { res = false, "post-auth says no" }
--
-- Report: an IQ get to the host with <query xmlns='urn:x-token-sidecar:e2e:session'/> is answered
-- with <query><json>{…}</json></query>: the events fired for this session, in order, and the
-- session fields (see `report` below).

local st = require "util.stanza";
local json = require "util.json";

local host = module.host;
local XMLNS = "urn:x-token-sidecar:e2e:session";

local EVENTS = {
	"pre-jitsi-authentication-fetch-key",
	"jitsi-authentication-token-verified",
	"jitsi-access-ban-check",
	"pre-jitsi-authentication",
	"post-jitsi-authentication",
};

local function session_of(event_name, data)
	if event_name == "jitsi-authentication-token-verified" then return data.session, data.claims; end
	return data;
end

local function user_id(session)
	local user = session.jitsi_meet_context_user;
	return type(user) == "table" and user.id or nil;
end

-- Recording runs first (high priority) so a steering answer cannot hide an event.
for _, name in ipairs(EVENTS) do
	module:hook_global(name, function (data)
		local session, claims = session_of(name, data);
		if type(session) ~= "table" or session.host ~= host then return; end
		session.test_events = session.test_events or {};
		table.insert(session.test_events, name);
		if claims then session.test_claims = claims; end
	end, 1000);
end

module:hook_global("pre-jitsi-authentication-fetch-key", function (session)
	if session.host ~= host then return; end
	if session.jitsi_web_query_room == "prefail" then
		return { res = false, error = "not-allowed", reason = "pre-fetch says no" };
	end
	if session.jitsi_web_query_room == "pubkey" then
		local f = assert(io.open(module:get_option_string("test_public_key_file"), "r"));
		session.public_key = f:read("*a");
		f:close();
	end
end);

module:hook_global("jitsi-access-ban-check", function (session)
	if session.host ~= host then return; end
	if user_id(session) == "banned" then return false; end
end);

module:hook_global("pre-jitsi-authentication", function (session)
	if session.host ~= host then return; end
	if user_id(session) == "custom" then return session.jitsi_meet_context_user.name; end
end);

module:hook_global("post-jitsi-authentication", function (session)
	if session.host ~= host then return; end
	if user_id(session) == "postfail" then
		return { res = false, error = "not-allowed", reason = "post-auth says no" };
	end
end);

-- Plain Lua values only (drops JSON nulls, functions, userdata; bounded depth).
local function plain(v, depth)
	local t = type(v);
	if t == "string" or t == "number" or t == "boolean" then return v; end
	if t ~= "table" or depth > 4 then return nil; end
	local out = {};
	for k, item in pairs(v) do
		if type(k) == "string" or type(k) == "number" then out[k] = plain(item, depth + 1); end
	end
	return out;
end

local FIELDS = {
	"username", "full_jid", "auth_token", "previd", "customusername", "user_agent_header",
	"jitsi_web_query_room", "jitsi_web_query_prefix",
	"jitsi_meet_room", "jitsi_meet_domain", "jitsi_meet_auth_issuer", "jitsi_meet_str_tenant",
	"jitsi_meet_context_user", "jitsi_meet_context_group", "jitsi_meet_context_features",
	"jitsi_meet_context_room", "jitsi_meet_tenant_mismatch",
};

local function report(session)
	local out = { events = session.test_events or {}, claims = plain(session.test_claims, 0) };
	for _, field in ipairs(FIELDS) do out[field] = plain(session[field], 0); end
	if out.auth_token ~= nil then out.auth_token = true; end -- presence only; never echo a token
	local jitsi = {};
	for k in pairs(session) do
		if type(k) == "string" and k:sub(1, 11) == "jitsi_meet_" then table.insert(jitsi, k); end
	end
	table.sort(jitsi);
	out.jitsi_meet_fields = jitsi;
	return out;
end

module:hook("iq-get/host/" .. XMLNS .. ":query", function (event)
	local origin, stanza = event.origin, event.stanza;
	local reply = st.reply(stanza):tag("query", { xmlns = XMLNS }):text_tag("json", json.encode(report(origin)));
	origin.send(reply);
	return true;
end);
