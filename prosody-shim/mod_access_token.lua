-- Participant access tokens through the token-sidecar daemon; a drop-in for jitsi-contrib's
-- mod_access_token. Load it on the MUC component. A client asks with
--   <iq type='get' to='room@conference.example.com/focus'>
--     <query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>
-- (or to the bare room JID) and gets <iq type='result'><token alg='…' data='JWT'/></iq>, but only
-- while it is an occupant of that room. The daemon signs and writes the answer; this module tells
-- it who asks and which room they are in, and reports the room's occupants as they come and go.

local jid = require "util.jid";
local sidecar = module:require "token_sidecar";
local access = module:require "token_sidecar_access";

local host = module.host;
local QUERY = "http://jabber.org/protocol/muc#access-token";

-- Forwarded as Prosody has them; the daemon checks them and says which one is wrong.
local OPTIONS = {
	"access_token_key", "access_token_key_file", "access_token_alg", "access_token_exp",
	"access_token_key_id", "access_token_audience", "access_token_previous_keys", "access_token_rate_limit",
};

local measure = {};
for _, outcome in ipairs({ "issued", "refused", "unavailable" }) do
	measure[outcome] = module:measure(outcome, "counter");
end

local service = sidecar.attach(nil, nil, function (service)
	local options, key_files = {}, {};
	for _, name in ipairs(OPTIONS) do options[name] = module:get_option(name); end
	key_files[1] = options.access_token_key_file;
	local previous = options.access_token_previous_keys;
	for _, key in ipairs(type(previous) == "table" and previous or {}) do
		if type(key) == "table" then key_files[#key_files + 1] = key.key_file; end
	end
	access.register_issuer(service, host, "access_token", options, key_files);
end);
access.track(service, host);

local function handle(event)
	local origin, stanza = event.origin, event.stanza;
	local query = stanza.tags[1];
	if stanza.attr.type ~= "get" or not (query and query.name == "query" and query.attr.xmlns == QUERY) then
		return nil; -- mod_muc's
	end
	local room_jid = jid.bare(stanza.attr.to);
	local muc = prosody.hosts[host].modules.muc;
	local room = muc and muc.get_room_from_jid(room_jid);
	local reply, why = service.call(access.describe({ op = "access_token", door = "muc", issuer = host,
		stanza = tostring(stanza) }, origin, room_jid, room, stanza.attr.from));
	local verdict, answer = access.outcome(stanza, reply, why);
	if verdict == "pass" then return nil; end
	measure[verdict](1);
	origin.send(answer);
	return true;
end

-- Before mod_muc (which would route the IQ to the occupant, or refuse it at the bare room JID).
module:hook("iq/full", handle, 1);
module:hook("iq/bare", handle, 1);
