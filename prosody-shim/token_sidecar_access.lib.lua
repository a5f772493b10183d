-- What the two access-token modules (mod_access_token, mod_short_lived_token) share: registering
-- their issuer with the daemon, describing who asks (room, occupant, session), turning the daemon's
-- reply into the one stanza the client gets, and reporting room occupancy, so that the daemon can
-- say whether a token's holder is still in the room.

local st = require "util.stanza";
local xml = require "util.xml";
local sidecar = module:require "token_sidecar";

local value, UNAVAILABLE = sidecar.value, sidecar.UNAVAILABLE;
local NICK = "http://jabber.org/protocol/nick";

-- The session fields the daemon may put in a token (set by the login and by mod_jitsi_session),
-- and jitsi_meet_domain (the login token's sub), which names the user for revocations when
-- context.user has no id and never goes into a token.
local SESSION_FIELDS = {
	"jitsi_meet_context_user", "jitsi_meet_context_group", "jitsi_meet_context_features",
	"granted_jitsi_meet_context_user_id", "granted_jitsi_meet_context_group_id", "user_region",
	"jitsi_web_query_room", "jitsi_web_query_prefix", "jitsi_meet_domain",
};

-- Registers the issuer `name` (the host `module_name` is loaded on) with its options, sending the
-- contents of each key file in `paths` it can read; the daemon reads the others itself, and names
-- the option when it cannot. Key contents are never logged.
local function register_issuer(service, name, module_name, options, paths)
	local files = {};
	for _, path in ipairs(paths) do
		local f = type(path) == "string" and io.open(path, "r");
		if f then
			files[path] = f:read("*a");
			f:close();
		end
	end
	service.client:remember("issuers", name, { module = module_name, options = options, files = files });
end

-- Completes an `access_token` request with what only Prosody knows: the room `room_jid` (nil when
-- the session has none) and `room` (nil or false when it does not exist), the sender `real_jid`'s
-- occupant in it, and the session's fields.
local function describe(req, session, room_jid, room, real_jid)
	req.room, req.room_exists = room_jid, room and true or false;
	req.meeting_id = room and room._data.meetingId or nil;
	local fields = {};
	for _, field in ipairs(SESSION_FIELDS) do fields[field] = session[field]; end
	local occupant = room and room:get_occupant_by_real_jid(real_jid);
	if occupant then
		req.occupant = { nick = occupant.nick, role = occupant.role or "none",
			affiliation = room:get_affiliation(real_jid) or "none" };
		local presence = occupant:get_presence(real_jid);
		if presence then
			fields.presence_nick = presence:get_child_text("nick", NICK);
			fields.presence_email = presence:get_child_text("email");
		end
	end
	req.session = fields;
	return req;
end

-- util.xml keeps the stream's namespace on every element; a stanza sent to a client has none.
local function without_client_namespace(el)
	if el.attr.xmlns == "jabber:client" then el.attr.xmlns = nil; end
	for _, child in ipairs(el.tags) do without_client_namespace(child); end
	return el;
end

-- What to answer `stanza` with, from the daemon's `reply` (or `why` there is none): "pass" (not
-- for us: let it go on), or "issued" / "refused" / "unavailable" and the stanza to send.
local function outcome(stanza, reply, why)
	if reply and reply.ok == true and reply.pass == true then return "pass"; end
	local text = reply and value(reply.stanza);
	local answer = type(text) == "string" and xml.parse(text) or nil;
	if not (answer and answer.name == "iq" and answer.attr.id == stanza.attr.id) then
		module:log("error", "access token for %s: %s: %s", tostring(stanza.attr.from), UNAVAILABLE,
			tostring(why or "the reply carries no stanza for this request"));
		return "unavailable", st.error_reply(stanza, "wait", "service-unavailable", UNAVAILABLE);
	end
	if reply.ok == true then return "issued", without_client_namespace(answer); end
	module:log("info", "no access token for %s: %s", tostring(stanza.attr.from), tostring(value(reply.text)));
	local detail = value(reply.detail);
	if detail then module:log("error", "access tokens of %s: %s", module.host, tostring(detail)); end
	return "refused", without_client_namespace(answer);
end

-- Occupancy: joins and leaves as they happen, and a MUC's whole occupancy after each (re)connect.
-- Fire and forget: a lost report is made good by the next resync, and nothing waits for one.
local function report(service, req)
	service.client:request(req, service.timeout, function () end);
end

-- Every present session of every occupant of the MUC `muc_host`, by room.
local function occupancy(muc_host)
	local host = prosody.hosts[muc_host];
	local muc, rooms = host and host.modules.muc, {};
	if not muc then return rooms; end
	for room in muc.live_rooms() do
		local list = {};
		for nick, occupant in room:each_occupant() do
			for real_jid, presence in occupant:each_session() do
				if presence.attr.type ~= "unavailable" then list[#list + 1] = { jid = real_jid, nick = nick }; end
			end
		end
		if list[1] then rooms[room.jid] = list; end
	end
	return rooms;
end

local tracked = {}; -- by this module

-- Reports the occupancy of `muc_host` (a MUC component; it may not exist yet). Both modules may
-- track one MUC: each event is reported once, and one resync per MUC is kept on the connection.
local function track(service, muc_host)
	if tracked[muc_host] then return; end
	tracked[muc_host] = true;
	local function first(event)
		if event.token_sidecar_reported then return false; end
		event.token_sidecar_reported = true;
		return true;
	end
	local function report_occupant(what, event, real_jid)
		report(service, { op = "occupant", event = what, room = event.room.jid, jid = real_jid,
			nick = event.occupant.nick });
	end
	local function hook()
		local muc = module:context(muc_host);
		-- Every session that joins (muc-occupant-joined fires for an occupant's first one only).
		muc:hook("muc-occupant-session-new", function (event)
			if first(event) then report_occupant("join", event, event.jid); end
		end);
		-- One session of several leaves (last in line, so no handler can still stop the leave).
		muc:hook("muc-occupant-pre-leave", function (event)
			if event.is_last_session ~= false or not first(event) then return; end
			report_occupant("leave", event, event.stanza.attr.from);
		end, -1000);
		muc:hook("muc-occupant-left", function (event)
			if not first(event) then return; end
			for real_jid in event.occupant:each_session() do report_occupant("leave", event, real_jid); end
		end);
	end
	if prosody.hosts[muc_host] then
		hook();
	else -- a VirtualHost may load before its MUC component
		module:hook_global("host-activated", function (activated)
			if activated == muc_host then hook(); end
		end);
	end
	local function resync(client)
		local req = { op = "occupants", muc = muc_host, rooms = occupancy(muc_host) };
		client:request(req, service.timeout, function () end);
	end
	service.client.on_ready["occupants " .. muc_host] = resync;
	if service.client.conn then resync(service.client); end
end

return {
	register_issuer = register_issuer;
	describe = describe;
	outcome = outcome;
	track = track;
};
