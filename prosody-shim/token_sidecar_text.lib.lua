-- token-sidecar client: only UTF-8 goes to the daemon.
--
-- The protocol is JSON, whose strings are UTF-8; Lua strings are bytes, and what a client sends
-- (a URL parameter such as ?room=%ff, an HTTP header such as User-Agent) may be anything. The JSON
-- encoders copy such bytes as they are, and the daemon cannot read the line. So request lines are
-- cleaned (`clean`), and settings that are not text are never altered to fit, only left out
-- (`sendable`). A token that is not UTF-8 is refused before it gets here (mod_auth_token).

local log = require "util.logger".init("token_sidecar");

local REPLACEMENT = "\u{FFFD}";

-- Whether `v` (a string, or a table of them, at any depth) is all UTF-8. utf8.len is strict:
-- it refuses what the daemon refuses (overlong forms, surrogates, code points past U+10FFFF).
local function valid(v)
	if type(v) == "string" then return utf8.len(v) ~= nil; end
	if type(v) ~= "table" then return true; end
	for k, x in pairs(v) do
		if not (valid(k) and valid(x)) then return false; end
	end
	return true;
end

-- `s` with every byte that is not part of a UTF-8 character replaced by U+FFFD. JSON's own
-- characters are ASCII, so a request line stays JSON, and such bytes can only be in strings:
-- fields for the daemon's logs (room, prefix, user agent), or a prefix or key that then matches
-- nothing real (a replacement never turns into a valid token, tenant or room).
local function clean(s)
	local ok, bad = utf8.len(s);
	if ok then return s; end
	local parts, from = {}, 1;
	while bad do
		parts[#parts + 1] = s:sub(from, bad - 1);
		from = bad + 1;
		ok, bad = utf8.len(s, from);
	end
	parts[#parts + 1] = s:sub(from);
	return table.concat(parts, REPLACEMENT);
end

-- A copy of `entries` (hosts' options or issuers, by name) for a hello. A key file (`files`)
-- that is not text (DER) is left out: the daemon reads it itself. An entry still holding other
-- bytes is left out and logged at error level (a secret altered to fit would be a different,
-- perhaps weaker, secret); the daemon then does not know it, and its logins fail.
local function sendable(entries, what)
	if entries == nil then return nil; end
	local out = {};
	for name, entry in pairs(entries) do
		local copy = {};
		for k, v in pairs(entry) do copy[k] = v; end
		if type(entry.files) == "table" then
			copy.files = {};
			for path, body in pairs(entry.files) do
				if valid(body) then copy.files[path] = body; end
			end
		end
		if valid(copy) then
			out[name] = copy;
		else
			log("error", "not sending the %s of %s to the token service: they hold bytes that are not UTF-8", what, name);
		end
	end
	return out;
end

return { valid = valid, clean = clean, sendable = sendable };
