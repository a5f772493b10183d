-- Generated from src/config/options.rs (the host-option table); do not edit by hand.
-- A test fails when this list and the table differ; it prints the text to put here.
-- The host options the shim forwards to token-sidecar, read with module:get_option.
return {
	"app_id",
	"app_secret",
	"asap_key_server",
	"cache_keys_url",
	"signature_algorithm",
	"allow_empty_token",
	"asap_accepted_issuers",
	"asap_accepted_audiences",
	"asap_require_room_claim",
	"enable_domain_verification",
	"muc_mapper_domain_base",
	"muc_mapper_domain_prefix",
	"muc_mapper_domain",
	"jwt_pubkey_cache_size",
	"token_leeway",
	"token_require_exp",
	"asap_key_ttl",
	"asap_key_stale_if_error",
	"asap_key_negative_ttl",
	"asap_key_fetch_timeout",
	"asap_key_fetch_retries",
	"asap_key_fetch_rate",
};
