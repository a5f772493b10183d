-- Token authentication through the token-sidecar daemon; a drop-in for Jitsi's mod_auth_token.
-- Same options (read here and sent to the daemon), same events and counters. The daemon verifies;
-- this module carries the token there, writes the answer into the session and fires the events.

local urldecode = require "util.http".urldecode;
local generate_uuid = require "util.uuid".generate;
local sasl = require "util.sasl";
local sidecar = module:require "token_sidecar";

local host = module.host;
local full_sessions = prosody.full_sessions;
local fire = prosody.events.fire_event;
local value, fingerprint, UNAVAILABLE = sidecar.value, sidecar.fingerprint, sidecar.UNAVAILABLE;
local service = sidecar.attach(host, module);

local measure_pre_fetch_fail = module:measure("pre_fetch_fail", "counter");
local measure_verify_fail = module:measure("verify_fail", "counter");
local measure_success = module:measure("success", "counter");
local measure_ban = module:measure("ban", "counter");
local measure_post_auth_fail = module:measure("post_auth_fail", "counter");
local measure_unavailable = module:measure("unavailable", "counter");

-- One query parameter, as util.http.formdecode would give it (the last one wins, `+` is a space),
-- without decoding the whole query: a token is most of a URL, and this runs on every connection.
local function param(query, name)
	local key, at, from = name .. "=", 1, nil;
	if query:sub(1, #key) == key then from = #key + 1; end
	while true do
		local i = query:find("&" .. key, at, true);
		if not i then break; end
		from, at = i + #key + 1, i + 1;
	end
	if not from then return nil; end
	local v = query:sub(from, (query:find("&", from, true) or 0) - 1);
	if v:find("%", 1, true) or v:find("+", 1, true) then v = urldecode((v:gsub("%+", "%%20"))); end
	return v;
end

-- Takes the token (and what mod_jitsi_session would read) off the BOSH / WebSocket request.
local function init_session(event)
	local session, request = event.session, event.request;
	-- Every token host's instance hooks the same global events: the first one does the work.
	if session.token_sidecar_seen then return; end
	session.token_sidecar_seen = true;
	local token = (request.headers.authorization or ""):match("^[Bb][Ee][Aa][Rr][Ee][Rr] (.*)$");
	local query = request.url.query;
	if query then
		token = param(query, "token") or token; -- the query wins over the header
		session.previd, session.customusername = param(query, "previd"), param(query, "customusername");
		session.jitsi_web_query_room = param(query, "room");
		session.jitsi_web_query_prefix = param(query, "prefix") or "";
	end
	session.auth_token, session.user_agent_header = token, request.headers.user_agent;
end
module:hook_global("bosh-session", init_session);
module:hook_global("websocket-session", init_session);

local provider = {};
function provider.test_password() return nil, "Password based auth not supported"; end
function provider.get_password() return nil; end
function provider.set_password() return nil, "Set password not supported"; end
function provider.user_exists() return nil; end
function provider.create_user() return nil; end
function provider.delete_user() return nil; end

-- Asks the daemon about the session's token. Returns the reply, or nil and why the service failed.
local function ask(session)
	local token = session.auth_token;
	if token and (#token > 49152 or not utf8.len(token)) then
		-- Would not fit a protocol line / is not text: refused here with the daemon's own texts.
		return { ok = false, condition = "not-allowed", text = #token > 49152 and "token too large" or "Invalid token" };
	end
	return service.call({
		op = "auth", host = host, token = token, public_key = session.public_key,
		prefix = session.jitsi_web_query_prefix, room = session.jitsi_web_query_room,
		user_agent = session.user_agent_header, context_required = session.contextRequired and true or nil,
	});
end

-- The daemon logs its refusals with the tenant, room and user agent; this says which session.
local function fail(session, counter, condition, text, why)
	module:log("warn", "token %s refused: %s%s", fingerprint(session.auth_token), tostring(text),
		why and (" (" .. tostring(why) .. ")") or "");
	session.auth_token = nil;
	counter(1);
	return false, condition or "not-allowed", text;
end

function provider.get_sasl_handler(session)
	local function verify(self)
		local pre = fire("pre-jitsi-authentication-fetch-key", session);
		if pre ~= nil and pre.res == false then
			return fail(session, measure_pre_fetch_fail, pre.error, pre.reason, "pre-jitsi-authentication-fetch-key");
		end

		local reply, why = ask(session);
		if not reply then
			module:log("error", "token %s: %s: %s", fingerprint(session.auth_token), UNAVAILABLE, why);
			session.auth_token = nil;
			measure_unavailable(1);
			return false, "temporary-auth-failure", UNAVAILABLE;
		end
		if reply.ok ~= true then
			local detail = value(reply.detail);
			return fail(session, measure_verify_fail, value(reply.condition), value(reply.text), detail ~= "" and detail);
		end

		if not reply.anonymous then
			for field, v in pairs(value(reply.session) or {}) do session[field] = value(v); end
			session.token_sidecar_sha256 = value(reply.token_sha256); -- the room check's key (mod_token_verification)
			local claims = value(reply.claims) or {};
			fire("jitsi-authentication-token-verified", { session = session, claims = claims });
			-- A token-verified handler may ask for a context claim.
			if session.contextRequired and value(claims.context) == nil then
				return fail(session, measure_verify_fail, "not-allowed", "jwt missing required context claim");
			end
		end

		if fire("jitsi-access-ban-check", session) == false then
			module:log("warn", "token %s: user is banned", fingerprint(session.auth_token));
			measure_ban(1);
			return false, "not-allowed", "user is banned";
		end

		local custom = fire("pre-jitsi-authentication", session);
		if custom then
			self.username = custom;
		elseif session.previd ~= nil then
			for _, other in pairs(full_sessions) do
				if other.resumption_token == session.previd then
					self.username = other.username;
					break;
				end
			end
		end -- else the mechanism's fresh UUID

		local post = fire("post-jitsi-authentication", session);
		if post ~= nil and post.res == false then
			return fail(session, measure_post_auth_fail, post.error, post.reason, "post-jitsi-authentication");
		end

		measure_success(1);
		return true;
	end
	return sasl.new(host, { anonymous = verify });
end

module:provides("auth", provider);

-- Prosody's own ANONYMOUS mechanism asks again while the profile says no; this one answers with the
-- refusal. util.sasl is shared, so this applies to every host, as with Jitsi's module.
sasl.registerMechanism("ANONYMOUS", { "anonymous" }, function (self)
	local username = generate_uuid();
	local ok, condition, text = self.profile.anonymous(self, username, self.realm);
	if ok ~= true then return "failure", condition or "not-allowed", text; end
	if self.username == nil then self.username = username; end
	return "success";
end);
