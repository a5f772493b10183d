-- token-sidecar client: one multiplexed connection to the daemon per Prosody process.
--
-- Modules that load this library share the connection for a socket path (kept on the `prosody`
-- table, so a module reload does not open a second one). Requests carry ids and may be answered
-- out of order; each has a deadline. Nothing here blocks Prosody: `call` suspends only the calling
-- session's async runner, `request` answers by callback.
-- Protocol: docs/PROTOCOL.md in the token-sidecar repository.

local server = require "net.server";
local timer = require "util.timer";
local async = require "util.async";
local gettime = require "util.time".now;
local hashes = require "util.hashes";
local generate_id = require "util.uuid".generate;
local log = require "util.logger".init("token_sidecar");
local have_unix, unix = pcall(require, "socket.unix");
local host_options = module:require "token_sidecar_options"; -- generated from the daemon's table
local text = module:require "token_sidecar_text"; -- only UTF-8 goes to the daemon

local json;
do
	local ok, cjson = pcall(require, "cjson.safe");
	json = ok and cjson or require "util.json";
end

local DEFAULT_SOCKET = "/run/token-sidecar/token-sidecar.sock";
local PROTOCOL_VERSION = 1;
local MAX_PENDING = 10000;        -- requests waiting for a reply; beyond this, fail at once
local MAX_BUFFER = 1024 * 1024;   -- an unterminated reply line longer than this is a broken daemon
local RETRY_MIN, RETRY_MAX = 0.05, 0.5; -- reconnect backoff (seconds): back within a second

local clients = prosody.token_sidecar_clients or {};
prosody.token_sidecar_clients = clients;

local Client = {};
Client.__index = Client;

local function value(v) -- JSON null as nil
	if v ~= json.null then return v; end
end

-- Only `ok: true` accepts and only a condition (an XML name) with a text refuses; an error reply,
-- or anything else a broken daemon might send, is a failure of the service, which lets nobody in.
local function checked(reply, why)
	if reply and (reply.ok == true or (reply.ok == false and type(reply.text) == "string"
		and type(reply.condition) == "string" and reply.condition:match("^[a-z][a-z%-]*$"))) then
		return reply;
	end
	if reply then why = ("%s: %s"):format(tostring(value(reply.error) or "malformed reply"), tostring(value(reply.text))); end
	return nil, why;
end

-- First 8 hex digits of the token's SHA-256: how a token appears in logs.
local function fingerprint(token)
	if type(token) ~= "string" then return "-"; end
	return hashes.sha256(token, true):sub(1, 8);
end

function Client:connect()
	if self.conn then return true; end
	self.last_attempt = gettime();
	local sock = have_unix and unix.stream();
	local ok, err = false, "lua-socket has no socket.unix";
	if sock then
		sock:settimeout(0);
		ok, err = sock:connect(self.path);
		if ok or err == "timeout" then ok, err = server.wrapclient(sock, self.path, 0, self.listeners, "*a"); end
	end
	if not ok then
		if sock then sock:close(); end
		if self.last_error ~= tostring(err) then
			log("warn", "token service at %s unreachable: %s (retrying)", self.path, tostring(err));
		end
		self.last_error = tostring(err);
		return self:retry();
	end
	self.conn, self.buffer = ok, "";
	self:hello({ hosts = self.hosts, issuers = self.issuers }, true);
	return true;
end

-- Tries again after the backoff (which only a successful hello resets).
function Client:retry()
	if self.retry_timer then return; end
	self.retry_timer = timer.add_task(self.backoff, function () self.retry_timer = nil; self:connect(); end);
	self.backoff = math.min(self.backoff * 2, RETRY_MAX);
end

-- The connection is gone (`closing` it first when it broke the protocol): everything waiting on it
-- fails now, and a reconnect is scheduled.
function Client:down(why, closing)
	local conn = self.conn;
	if not conn then return; end
	self.conn, self.last_error = nil, why or "closed";
	log(closing and "error" or "warn", "connection to the token service lost (%s); %d requests failed",
		self.last_error, self.npending);
	local pending = self.pending;
	self.pending, self.npending = {}, 0;
	for _, p in pairs(pending) do p.cb(nil, "connection to the token service lost"); end
	if closing then conn:close(); end
	self:retry();
end

function Client:on_data(data)
	local buf, start = self.buffer .. data, 1;
	while self.conn do
		local nl = buf:find("\n", start, true);
		if not nl then break; end
		local line = buf:sub(start, nl - 1);
		start = nl + 1;
		local reply = line ~= "" and json.decode(line);
		if line ~= "" and type(reply) ~= "table" then return self:down("it sent a line that is not a JSON object", true); end
		local p = reply and self.pending[reply.id];
		if p then -- else answered after its deadline
			self.pending[reply.id], self.npending = nil, self.npending - 1;
			p.cb(reply);
		end
	end
	self.buffer = buf:sub(start);
	if #self.buffer > MAX_BUFFER then self:down(("it sent a line over %d bytes"):format(MAX_BUFFER), true); end
end

-- Fails requests whose deadline passed. Runs only while something is waiting.
function Client:sweep()
	local now = gettime();
	for id, p in pairs(self.pending) do
		if p.deadline <= now then
			self.pending[id], self.npending = nil, self.npending - 1;
			p.cb(nil, "the token service did not answer in time");
		end
	end
	if self.npending > 0 then return 0.1; end
	self.sweeping = false;
end

-- Sends `req` (a table; `id` is set here) and calls `cb(reply)` or `cb(nil, why)` exactly once.
function Client:request(req, timeout, cb)
	if not self.conn and gettime() - (self.last_attempt or 0) >= RETRY_MIN then self:connect(); end
	if not self.conn then return cb(nil, "token service unreachable: " .. tostring(self.last_error)); end
	if self.npending >= MAX_PENDING then return cb(nil, "too many requests waiting for the token service"); end
	local body, err = json.encode(req);
	if not body then return cb(nil, "could not encode request: " .. tostring(err)); end
	self.next_id = self.next_id + 1;
	local id = self.next_id;
	self.pending[id] = { cb = cb, deadline = gettime() + timeout };
	self.npending = self.npending + 1;
	if not self.sweeping then
		self.sweeping = true;
		timer.add_task(0.1, function () return self:sweep(); end);
	end
	-- `id` first: a daemon that cannot read what follows still answers under it, at once.
	self.conn:write(text.clean(('{"id":%d,%s'):format(id, body:sub(2))) .. "\n");
end

-- Like `request`, but waits inside the current async runner. Returns the reply, or nil and why.
-- Only acceptances and refusals come back (see `checked`).
function Client:call(req, timeout)
	local settled, result, why, waiting = false, nil, nil, nil;
	self:request(req, timeout, function (reply, err)
		settled, result, why = true, reply, err;
		if waiting then waiting(); end
	end);
	if not settled then
		local wait;
		wait, waiting = async.waiter();
		wait();
	end
	return checked(result, why);
end

-- `settings`: { hosts = { [host] = options }, issuers = { [name] = issuer } }, all of them when
-- `connecting` (then the `on_ready` callbacks run once the daemon has them), else what changed.
function Client:hello(settings, connecting)
	local hosts, issuers = text.sendable(settings.hosts, "settings"), text.sendable(settings.issuers, "issuer settings");
	local req = { op = "hello", version = PROTOCOL_VERSION, instance = self.instance, hosts = hosts, issuers = issuers };
	self:request(req, 10, function (reply, err)
		if not (reply and reply.ok) then
			return log("error", "token service hello failed: %s", reply and tostring(value(reply.text)) or err);
		end
		self.backoff = RETRY_MIN;
		for kind, errors in pairs({ settings = value(reply.errors), ["issuer settings"] = value(reply.issuer_errors) }) do
			for name, why in pairs(errors) do log("error", "token service rejected the %s of %s: %s", kind, name, why); end
		end
		for _, warning in ipairs(value(reply.warnings) or {}) do log("warn", "token service: %s", warning); end
		log("info", "token service %s ready (hosts accepted: %s)", tostring(value(reply.daemon)),
			table.concat(value(reply.accepted) or {}, ", "));
		if connecting then for _, ready in pairs(self.on_ready) do ready(self); end end
	end);
end

-- Keeps `entry` as `kind` ("hosts" or "issuers") `name`, sent in every hello; sends it now if new.
function Client:remember(kind, name, entry)
	local encoded = json.encode(entry);
	if self.registered[kind .. " " .. name] == encoded then return; end
	self.registered[kind .. " " .. name], self[kind][name] = encoded, entry;
	if self.conn then self:hello({ [kind] = { [name] = entry } }); end
end

-- Registers (or updates) a host's token options, read from `context` (a module or module:context).
function Client:register(host, context)
	local options = {};
	for _, name in ipairs(host_options) do options[name] = context:get_option(name); end
	self:remember("hosts", host, options);
end

local function client_for(path)
	local c = clients[path];
	if c then return c; end
	c = setmetatable({ path = path, next_id = 0, pending = {}, npending = 0, hosts = {}, issuers = {}, registered = {},
		on_ready = {}, instance = generate_id(), backoff = RETRY_MIN, buffer = "" }, Client);
	c.listeners = {
		onincoming = function (conn, data) if conn == c.conn then c:on_data(data); end end;
		ondisconnect = function (conn, err) if conn == c.conn then c:down(err); end end;
		onreadtimeout = function () return true; end; -- an idle connection is fine
	};
	clients[path] = c;
	c:connect();
	return c;
end

-- What a module needs: the client for its `token_sidecar_socket`, its `token_sidecar_timeout`, and
-- `host`'s options registered from `context` — read again, like every option, on config reload
-- (`on_reload(service)`, if given, re-reads the module's own).
local function attach(host, context, on_reload)
	local service = {};
	local function load()
		service.timeout = module:get_option_number("token_sidecar_timeout", 10);
		service.client = client_for(module:get_option_string("token_sidecar_socket", DEFAULT_SOCKET));
		if host then service.client:register(host, context); end
		if on_reload then on_reload(service); end
	end
	load();
	module:hook_global("config-reloaded", load);
	function service.call(req)
		if not async.ready() then return nil, "no async runner to wait in"; end
		return service.client:call(req, service.timeout);
	end
	return service;
end

return {
	attach = attach;
	fingerprint = fingerprint;
	value = value;
	UNAVAILABLE = "token service unavailable";
};
