-- Test-only (tests/e2e): puts the token's identity on a user's outgoing presence, so other room
-- occupants can see who the token says they are. Whatever <identity> the client wrote itself is
-- removed first: only the verified token speaks for the user.
--
-- Load on the token VirtualHost. Reads session.jitsi_meet_context_user / _group, which the auth
-- module sets from the token's `context` claim.

local function text(v) -- strings and numbers only (a JSON null arrives as a lightuserdata)
	if type(v) == "string" or type(v) == "number" then return tostring(v); end
	return nil;
end

local function stamp_identity(event)
	local session, stanza = event.origin, event.stanza;
	stanza:maptags(function (tag) -- any namespace: nothing the client wrote may pass as identity
		if tag.name == "identity" then return nil; end
		return tag;
	end);
	local user = session.jitsi_meet_context_user;
	if type(user) ~= "table" then return; end
	stanza:tag("identity"):tag("user");
	for _, field in ipairs({ "id", "name", "email", "avatar" }) do
		local v = text(user[field]);
		if v then stanza:text_tag(field, v); end
	end
	stanza:up(); -- user
	local group = text(session.jitsi_meet_context_group);
	if group then stanza:text_tag("group", group); end
	stanza:up(); -- identity
end

module:hook("pre-presence/full", stamp_identity);
module:hook("pre-presence/bare", stamp_identity);
