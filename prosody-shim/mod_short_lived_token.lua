-- Short-lived tokens for other services through the token-sidecar daemon; a drop-in for Jitsi's
-- mod_short_lived_token, on Prosody 0.12 and 13. Load it on the VirtualHost beside
-- mod_external_services. A client asks with the XEP-0215 credentials IQ
--   <iq type='get' to='meet.example.com'><credentials xmlns='urn:xmpp:extdisco:2'>
--     <service type='short-lived-token' host='file-sharing'/></credentials></iq>
-- and, while it is an occupant of the room of its connection URL (?room=, tenant), gets a
-- <service type='short-lived-token' host='file-sharing' username='token' password='JWT' …/>
-- for each requested audience in short_lived_token.accepted_audiences. A refusal is the one reply
-- (Jitsi's module lets mod_external_services send a second).

local jid = require "util.jid";
local datetime = require "util.datetime";
local sidecar = module:require "token_sidecar";
local access = module:require "token_sidecar_access";

local host = module.host;
local EXTDISCO = "urn:xmpp:extdisco:2";
local SERVICE_TYPE = "short-lived-token";

local main_muc, domain_base;
local measure = {};
for _, outcome in ipairs({ "issued", "refused", "unavailable" }) do
	measure[outcome] = module:measure(outcome, "counter");
end

local service = sidecar.attach(nil, nil, function (service)
	local options = module:get_option("short_lived_token");
	main_muc = module:get_option_string("main_muc");
	domain_base = module:get_option_string("muc_mapper_domain_base", host);
	local key_files = {};
	if type(options) == "table" then
		key_files[1] = options.key_path;
		for _, key in ipairs(type(options.previous_keys) == "table" and options.previous_keys or {}) do
			if type(key) == "table" then key_files[#key_files + 1] = key.key_path; end
		end
	end
	access.register_issuer(service, host, "short_lived_token", { short_lived_token = options, main_muc = main_muc,
		region_name = module:get_option_string("region_name") }, key_files);
	if main_muc then access.track(service, main_muc); end
end);

-- The room of the session's connection URL, as Jitsi finds it: [tenant]room@main_muc, unless the
-- tenant is the main domain. Returns its JID (nil: the session has none) and the room (nil: none).
local function session_room(session)
	local name, prefix = session.jitsi_web_query_room, session.jitsi_web_query_prefix;
	if type(name) ~= "string" or not main_muc then return nil; end
	if prefix and prefix ~= "" and prefix ~= domain_base then name = "[" .. prefix .. "]" .. name; end
	local room_jid = jid.join(name, main_muc);
	room_jid = jid.prep(room_jid) or room_jid;
	local muc = prosody.hosts[main_muc] and prosody.hosts[main_muc].modules.muc;
	return room_jid, muc and muc.get_room_from_jid(room_jid) or nil;
end

local function wants_token(credentials)
	for requested in credentials:childtags("service") do
		if requested.attr.type == SERVICE_TYPE then return true; end
	end
	return false;
end

-- The <service/> entries of the daemon's result, as mod_external_services takes them.
local function services_of(result)
	local entries, credentials = {}, result:get_child("credentials", EXTDISCO);
	if not credentials then return entries; end
	for entry in credentials:childtags("service") do
		local a = entry.attr;
		entries[#entries + 1] = { type = a.type, host = a.host, username = a.username, password = a.password,
			expires = datetime.parse(a.expires), restricted = true, transport = a.transport, port = tonumber(a.port) };
	end
	return entries;
end

-- Before mod_external_services, which answers once the credentials event below is done.
module:hook("iq-get/host/" .. EXTDISCO .. ":credentials", function (event)
	local origin, stanza = event.origin, event.stanza;
	if not wants_token(stanza.tags[1]) then return nil; end
	local room_jid, room = session_room(origin);
	local reply, why = service.call(access.describe({ op = "access_token", door = "extdisco", issuer = host,
		stanza = tostring(stanza) }, origin, room_jid, room, stanza.attr.from));
	local verdict, answer = access.outcome(stanza, reply, why);
	if verdict == "pass" then return nil; end
	measure[verdict](1);
	if verdict == "issued" and prosody.hosts[host].modules.external_services then
		stanza.token_sidecar_services = services_of(answer); -- its reply carries them with any others asked for
		return nil;
	end
	origin.send(answer);
	return true;
end, 1);

module:hook("external_service/credentials", function (event)
	for _, entry in ipairs(event.stanza.token_sidecar_services or {}) do event.services:push(entry); end
end);
