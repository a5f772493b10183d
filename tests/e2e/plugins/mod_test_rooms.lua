-- Test-only (tests/e2e): marks rooms as closed to guests the way Jitsi's room metadata does
-- (`room._data.allowUnauthenticatedAccess = false`). Any room whose name, after an optional
-- `[tenant]` prefix, starts with "locked" gets the flag when it is created.
--
-- Load on the MUC component.

local jid = require "util.jid";

module:hook("muc-room-created", function (event)
	local room = event.room;
	local node = jid.node(room.jid) or "";
	local name = node:gsub("^%[[^%]]*%]", "");
	if name:sub(1, 6) == "locked" then
		room._data.allowUnauthenticatedAccess = false;
		module:log("info", "test_rooms: %s is closed to unauthenticated users", room.jid);
	end
end);
