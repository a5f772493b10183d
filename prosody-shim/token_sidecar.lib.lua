-- token-sidecar client: one multiplexed connection to the daemon per Prosody process.
--
-- Every module that loads this library shares the connection for a socket path (kept on the
-- `prosody` table, so a module reload does not open a second one). Requests carry ids and may be
-- answered out of order; each has a deadline. Nothing here blocks Prosody: `call` suspends only
-- the calling session's async runner, `request` answers by callback.
-- Protocol: docs/PROTOCOL.md in the token-sidecar repository.

local server = require "net.server";
local timer = require "util.timer";
local async = require "util.async";
local gettime = require "util.time".now;
local hashes = require "util.hashes";
local log = require "util.logger".init("token_sidecar");

local have_unix, unix = pcall(require, "socket.unix");
if have_unix and type(unix) == "function" then unix = { stream = unix }; end -- older lua-socket builds

local json;
do
	local ok, cjson = pcall(require, "cjson.safe");
	json = ok and cjson or require "util.json";
end
local null = json.null;

local DEFAULT_SOCKET = "/run/token-sidecar/token-sidecar.sock";
local PROTOCOL_VERSION = 1;
local MAX_PENDING = 10000;        -- requests waiting for a reply; beyond this, fail at once
local MAX_BUFFER = 1024 * 1024;   -- an unterminated reply line longer than this is a broken daemon
local RETRY_MIN, RETRY_MAX = 0.05, 0.5; -- reconnect backoff (seconds): back within a second

-- The host options the daemon reads (docs/CONFIG.md), under Prosody's names.
local HOST_OPTIONS = {
	"app_id", "app_secret", "asap_key_server", "cache_keys_url", "signature_algorithm",
	"allow_empty_token", "asap_accepted_issuers", "asap_accepted_audiences", "asap_require_room_claim",
	"enable_domain_verification", "muc_mapper_domain_base", "muc_mapper_domain_prefix", "muc_mapper_domain",
	"jwt_pubkey_cache_size", "token_leeway", "token_require_exp", "asap_key_ttl", "asap_key_stale_if_error",
	"asap_key_negative_ttl", "asap_key_fetch_timeout", "asap_key_fetch_retries", "asap_key_fetch_rate",
};

local clients = prosody.token_sidecar_clients or {};
prosody.token_sidecar_clients = clients;

local Client = {};
Client.__index = Client;

local function value(v) -- JSON null as nil
	if v == null then return nil; end
	return v;
end

-- Only `ok: true` accepts and only a condition with a text refuses; an error reply, or anything
-- else a broken daemon might send, is a failure of the service (which lets nobody in).
-- Returns the reply, or nil and why.
local function checked(reply, why)
	if not reply then return nil, why; end
	if reply.ok == true then return reply; end
	if reply.ok == false and type(reply.condition) == "string" and reply.condition:match("^[a-z][a-z%-]*$")
		and type(reply.text) == "string" then
		return reply;
	end
	return nil, ("%s: %s"):format(tostring(value(reply.error) or "malformed reply"), tostring(value(reply.text)));
end

-- First 8 hex digits of the token's SHA-256: how a token appears in logs.
local function fingerprint(token)
	if type(token) ~= "string" then return "-"; end
	return hashes.sha256(token, true):sub(1, 8);
end

function Client:fail_all(why)
	local pending = self.pending;
	self.pending, self.npending = {}, 0;
	for _, p in pairs(pending) do p.cb(nil, why); end
end

function Client:schedule_reconnect()
	if self.retry_timer then return; end
	local delay = self.backoff;
	self.backoff = math.min(self.backoff * 2, RETRY_MAX);
	self.retry_timer = timer.add_task(delay, function ()
		self.retry_timer = nil;
		self:connect();
	end);
end

function Client:connect()
	if self.conn then return true; end
	self.last_attempt = gettime();
	if not have_unix then
		self.last_error = "lua-socket has no socket.unix";
		log("error", "cannot reach the token service: %s", self.last_error);
		return nil;
	end
	local sock = unix.stream();
	sock:settimeout(0);
	local ok, err = sock:connect(self.path);
	if not ok and err ~= "timeout" then
		sock:close();
		if self.last_error ~= err then
			log("warn", "token service at %s unreachable: %s (retrying)", self.path, err);
		end
		self.last_error = err;
		self:schedule_reconnect();
		return nil;
	end
	local conn, werr = server.wrapclient(sock, self.path, 0, self.listeners, "*a");
	if not conn then
		sock:close();
		self.last_error = tostring(werr);
		self:schedule_reconnect();
		return nil;
	end
	self.conn, self.buffer = conn, "";
	if next(self.hosts) then self:hello(self.hosts); end
	return true;
end

function Client:on_down(err)
	self.conn = nil;
	self.last_error = err or "closed";
	log("warn", "connection to the token service closed (%s); %d requests failed", self.last_error, self.npending);
	self:fail_all("connection to the token service lost");
	self:schedule_reconnect();
end

-- Drops a connection that broke the protocol: everything waiting on it fails now.
function Client:abandon(why)
	local conn = self.conn;
	if not conn then return; end
	log("error", "token service %s; reconnecting", why);
	self:on_down(why);
	conn:close();
end

function Client:on_line(line)
	if line == "" then return; end
	local reply = json.decode(line);
	if type(reply) ~= "table" then return self:abandon("sent a line that is not a JSON object"); end
	local p = self.pending[reply.id];
	if not p then return; end -- answered after its deadline
	self.pending[reply.id] = nil;
	self.npending = self.npending - 1;
	p.cb(reply);
end

function Client:on_data(data)
	local buf = self.buffer .. data;
	local start = 1;
	while self.conn do
		local nl = buf:find("\n", start, true);
		if not nl then break; end
		self:on_line(buf:sub(start, nl - 1));
		start = nl + 1;
	end
	self.buffer = buf:sub(start);
	if #self.buffer > MAX_BUFFER then self:abandon(("sent a line over %d bytes"):format(MAX_BUFFER)); end
end

-- Fails requests whose deadline passed. Runs only while something is waiting.
function Client:sweep()
	local now, expired = gettime(), {};
	for id, p in pairs(self.pending) do
		if p.deadline <= now then expired[id] = p; end
	end
	for id, p in pairs(expired) do
		self.pending[id] = nil;
		self.npending = self.npending - 1;
		p.cb(nil, "the token service did not answer in time");
	end
	if self.npending == 0 then
		self.sweeping = false;
		return nil;
	end
	return 0.1;
end

-- Sends `req` (a table; `id` is set here) and calls `cb(reply)` or `cb(nil, why)` exactly once.
function Client:request(req, timeout, cb)
	if not self.conn and gettime() - (self.last_attempt or 0) >= RETRY_MIN then
		self:connect();
	end
	if not self.conn then
		return cb(nil, "token service unreachable: " .. tostring(self.last_error));
	end
	if self.npending >= MAX_PENDING then
		return cb(nil, "too many requests waiting for the token service");
	end
	local id = self.next_id + 1;
	self.next_id = id;
	req.id = id;
	local line, err = json.encode(req);
	if not line then return cb(nil, "could not encode request: " .. tostring(err)); end
	self.pending[id] = { cb = cb, deadline = gettime() + timeout };
	self.npending = self.npending + 1;
	if not self.sweeping then
		self.sweeping = true;
		timer.add_task(0.1, function () return self:sweep(); end);
	end
	self.conn:write(line .. "\n");
end

-- Like `request`, but waits inside the current async runner. Returns reply or nil, why.
-- Only acceptances and refusals come back (see `checked`).
function Client:call(req, timeout)
	local settled, result, why = false, nil, nil;
	local waiting;
	self:request(req, timeout, function (reply, err)
		settled, result, why = true, reply, err;
		if waiting then waiting(); end
	end);
	if not settled then
		local wait, done = async.waiter();
		waiting = done;
		wait();
	end
	return checked(result, why);
end

function Client:hello(hosts)
	self:request({ op = "hello", version = PROTOCOL_VERSION, hosts = hosts }, 10, function (reply, err)
		if not reply then
			log("error", "token service hello failed: %s", err);
			return;
		end
		if not reply.ok then
			log("error", "token service refused hello: %s %s", tostring(value(reply.error)), tostring(value(reply.text)));
			return;
		end
		self.backoff = RETRY_MIN;
		for host, why in pairs(value(reply.errors) or {}) do
			log("error", "token service rejected the settings of %s: %s", host, why);
		end
		for _, warning in ipairs(value(reply.warnings) or {}) do
			log("warn", "token service: %s", warning);
		end
		log("info", "token service %s ready (hosts accepted: %s)", tostring(value(reply.daemon)),
			table.concat(value(reply.accepted) or {}, ", "));
	end);
end

-- Registers (or updates) a host's token options, read from `context` (a module or module:context).
function Client:register(host, context)
	local options = {};
	for _, name in ipairs(HOST_OPTIONS) do
		options[name] = context:get_option(name);
	end
	local encoded = json.encode(options);
	if self.registered[host] == encoded then return; end
	self.registered[host] = encoded;
	self.hosts[host] = options;
	if self.conn then self:hello({ [host] = options }); end
end

local function client_for(path)
	path = path or DEFAULT_SOCKET;
	local c = clients[path];
	if c then return c; end
	c = setmetatable({
		path = path, next_id = 0, pending = {}, npending = 0, hosts = {}, registered = {},
		backoff = RETRY_MIN, buffer = "",
	}, Client);
	c.listeners = {
		onincoming = function (conn, data) if conn == c.conn then c:on_data(data); end end;
		ondisconnect = function (conn, err) if conn == c.conn then c:on_down(err); end end;
		onreadtimeout = function () return true; end; -- an idle connection is fine
	};
	clients[path] = c;
	c:connect();
	return c;
end

return {
	client_for = client_for;
	fingerprint = fingerprint;
	value = value;
	in_runner = async.ready;
	DEFAULT_SOCKET = DEFAULT_SOCKET;
	UNAVAILABLE = "token service unavailable";
};
