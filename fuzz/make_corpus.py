#!/usr/bin/env python3
"""Writes the small seed corpus committed under fuzz/corpus/<target>/ (docs/FUZZING.md).

Needs python3 and the openssl command. Keys are fresh each run, so a rerun changes the key seeds;
run it to rebuild every target's seeds (`python3 fuzz/make_corpus.py`) or only some
(`python3 fuzz/make_corpus.py token jwk`), then commit what changed. Seeds are a few KB each, tens per target; the fuzzer's own corpus goes to
fuzz/corpus-gen/ (gitignored).
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
NOW = 1_800_000_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


def pem_body(pem: bytes) -> bytes:
    lines = [l for l in pem.decode().splitlines() if l and not l.startswith("-----")]
    return base64.b64decode("".join(lines))


def der_elements(der: bytes):
    """The children of the outer SEQUENCE (enough DER for SPKI and RSAPublicKey)."""
    def read(buf, i):
        tag = buf[i]
        length = buf[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(buf[i:i + n], "big")
            i += n
        return tag, buf[i:i + length], i + length

    _, content, _ = read(der, 0)
    out, i = [], 0
    while i < len(content):
        tag, value, i = read(content, i)
        out.append((tag, value))
    return out


class Keys:
    def __init__(self, tmp: str):
        self.tmp = tmp
        self.private = {}
        self.public = {}
        gen = {
            "rsa2048": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "rsa1024": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            "p256": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "p384": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "p521": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "ed25519": ["genpkey", "-algorithm", "ED25519"],
        }
        for name, args in gen.items():
            path = os.path.join(tmp, name + ".pem")
            openssl(*args, "-out", path)
            self.private[name] = open(path, "rb").read()
            self.public[name] = openssl("pkey", "-in", path, "-pubout")
        rsa = os.path.join(tmp, "rsa2048.pem")
        self.rsa_pkcs1_public = openssl("rsa", "-in", rsa, "-RSAPublicKey_out")
        self.rsa_pkcs1_private = openssl("rsa", "-in", rsa, "-traditional")
        self.ec_sec1_private = openssl("ec", "-in", os.path.join(tmp, "p256.pem"))
        self.certs = {}
        for name in ["rsa2048", "p256", "ed25519"]:
            self.certs[name] = openssl(
                "req", "-x509", "-key", os.path.join(tmp, name + ".pem"), "-subj", "/CN=fuzz",
                "-days", "3650", "-outform", "PEM",
            )

    def jwk(self, name: str, **extra) -> dict:
        spki = pem_body(self.public[name])
        (_, alg), (_, bits) = der_elements(spki)
        key = bits[1:]  # BIT STRING: one byte of unused bits
        if name.startswith("rsa"):
            (_, n), (_, e) = der_elements(key)
            jwk = {"kty": "RSA", "n": b64url(n.lstrip(b"\0")), "e": b64url(e)}
        elif name == "ed25519":
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(key)}
        else:
            size = (len(key) - 1) // 2
            crv = {32: "P-256", 48: "P-384", 66: "P-521"}[size]
            jwk = {"kty": "EC", "crv": crv, "x": b64url(key[1:1 + size]), "y": b64url(key[1 + size:])}
        jwk.update(extra)
        return jwk


def write(target: str, name: str, data: bytes | str):
    if isinstance(data, str):
        data = data.encode()
    path = os.path.join(OUT, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def key_seeds(k: Keys):
    pems = {
        "rsa2048-spki": k.public["rsa2048"],
        "rsa2048-pkcs1": k.rsa_pkcs1_public,
        "rsa1024-spki": k.public["rsa1024"],
        "p256-spki": k.public["p256"],
        "p384-spki": k.public["p384"],
        "p521-spki": k.public["p521"],
        "ed25519-spki": k.public["ed25519"],
        "rsa-cert": k.certs["rsa2048"],
        "p256-cert": k.certs["p256"],
        "ed25519-cert": k.certs["ed25519"],
        "rsa2048-pkcs8": k.private["rsa2048"],
        "rsa2048-pkcs1-private": k.rsa_pkcs1_private,
        "p256-pkcs8": k.private["p256"],
        "p256-sec1": k.ec_sec1_private,
        "p384-pkcs8": k.private["p384"],
        "ed25519-pkcs8": k.private["ed25519"],
    }
    for name, pem in pems.items():
        write("key_pem", name + ".pem", pem)
    write("key_pem", "empty-block.pem", "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n")
    write("key_pem", "unknown-label.pem", "-----BEGIN FOO-----\nMAA=\n-----END FOO-----\n")
    write("key_pem", "not-pem", "hello")
    write("key_pem", "two-blocks.pem", k.public["p256"] + k.public["ed25519"])
    labels = ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]
    for name, pem in pems.items():
        label = pem.decode().splitlines()[0].removeprefix("-----BEGIN ").removesuffix("-----")
        write("key_der", name + ".der", bytes([labels.index(label)]) + pem_body(pem))


def jwk_seeds(k: Keys):
    rsa = k.jwk("rsa2048", kid="rs", use="sig", alg="RS256")
    p256 = k.jwk("p256", kid="es", alg="ES256")
    p384 = k.jwk("p384", kid="es384", key_ops=["verify"])
    ed = k.jwk("ed25519", kid="ed", alg="EdDSA")
    seeds = {
        "rsa": rsa,
        "rsa-weak": k.jwk("rsa1024", kid="weak"),
        "p256": p256,
        "p384": p384,
        "p521": k.jwk("p521", kid="p521"),
        "ed25519": ed,
        "oct": {"kty": "oct", "k": b64url(b"secret"), "kid": "hs"},
        "rsa-enc": dict(rsa, use="enc"),
        "rsa-wrong-alg": dict(rsa, alg="ES256"),
        "ec-wrong-crv": dict(p256, crv="P-384"),
        "array": [p256, ed],
        "jwks": {"keys": [rsa, p256]},
    }
    for name, doc in seeds.items():
        write("jwk", name + ".json", json.dumps(doc))
    jwks = {
        "all": {"keys": [rsa, p256, p384, ed]},
        "one": {"keys": [ed]},
        "empty": {"keys": []},
        "none-usable": {"keys": [seeds["oct"], seeds["rsa-weak"]]},
        "mixed": {"keys": [seeds["oct"], p256, {"kty": "EC"}]},
        "no-kid": {"keys": [{k2: v for k2, v in p256.items() if k2 != "kid"}]},
        "duplicate-kid": {"keys": [p256, dict(ed, kid="es")]},
        "firebase-map": {"k1": k.certs["rsa2048"].decode()},
        "keys-not-array": {"keys": {"a": 1}},
    }
    for name, doc in jwks.items():
        write("jwks", name + ".json", json.dumps(doc))
    return rsa, p256, ed, jwks


def key_fetch_seeds(k: Keys, jwks: dict):
    # Byte 0: bit 0 = key set (1) or key server (0), bits 1-2 = status (200, 200, 204, 503).
    def seed(mode, cache_control, age, body):
        return bytes([mode]) + cache_control.encode() + b"\n" + age.encode() + b"\n" + body

    write("key_fetch", "server-rsa", seed(0, "max-age=300", "", k.public["rsa2048"]))
    write("key_fetch", "server-p256", seed(0, "public, max-age=60, must-revalidate", "10", k.public["p256"]))
    write("key_fetch", "server-cert", seed(0, "no-cache", "", k.certs["p256"]))
    write("key_fetch", "server-private", seed(0, "", "", k.private["p256"]))
    write("key_fetch", "server-garbage", seed(0, "max-age=x", "", b"<html>not a key</html>"))
    write("key_fetch", "server-204", seed(4, "", "", b""))
    write("key_fetch", "server-503", seed(6, "", "", b"busy"))
    write("key_fetch", "set-jwks", seed(1, "max-age=19845", "30", json.dumps(jwks["all"]).encode()))
    write("key_fetch", "set-firebase", seed(1, "max-age=21600", "", json.dumps(
        {"a": k.certs["rsa2048"].decode(), "b": k.public["p256"].decode(), "c": 5}).encode()))
    write("key_fetch", "set-none-usable", seed(1, "", "", json.dumps(jwks["none-usable"]).encode()))
    write("key_fetch", "set-duplicate", seed(1, "no-store", "", json.dumps(jwks["duplicate-kid"]).encode()))
    write("key_fetch", "set-empty", seed(1, "", "", b"{}"))
    write("key_fetch", "set-array", seed(1, "", "", b"[1,2]"))


def protocol_seeds():
    lines = [
        '{"id":1,"op":"hello","version":1,"hosts":{"meet.example.com":{"app_id":"example_app_id","app_secret":"example_app_secret","muc_mapper_domain_base":"meet.example.com"},"bad.example.com":{"app_id":"x"}}}',
        '{"id":1,"op":"hello","version":1,"hosts":{"k.example":{"app_id":"a","asap_key_server":"https://keys.example/","cache_keys_url":"http://127.0.0.1/jwks","signature_algorithm":["RS256","ES256"],"asap_accepted_issuers":["a","b"],"asap_accepted_audiences":"*","token_leeway":30,"asap_key_fetch_timeout":2,"enable_domain_verification":false}}}',
        '{"id":1,"op":"hello","version":1,"instance":"3f6c2a9e-prosody","hosts":{},"issuers":{"conference.meet.example.com":{"module":"access_token","options":{"access_token_key":"k"},"files":{}}}}',
        '{"id":2,"op":"auth","host":"meet.example.com","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln","prefix":"acme","room":"room1","user_agent":"Mozilla/5.0","context_required":true}',
        '{"id":"x","op":"auth","host":"h\\u0041","token":null,"public_key":"-----BEGIN PUBLIC KEY-----\\nMAA=\\n-----END PUBLIC KEY-----\\n"}',
        '{"id":1,"op":"auth","host":"a","host":"b"}',
        '{"id":3,"op":"room","host":"meet.example.com","room":"[acme]room1@conference.meet.example.com","token_sha256":"ab","session":{"jitsi_meet_room":"room1","jitsi_meet_domain":"meet.example.com","jitsi_meet_context_room":{"regex":true},"jitsi_meet_str_tenant":"acme"},"prefix":"acme","room_exists":true,"allow_unauthenticated_access":false}',
        '{"id":4,"op":"ping"}',
        '{"id":5,"op":"stats"}',
        '{"id":2,"op":"access_token","issuer":"conference.meet.example.com","door":"muc","stanza":"<iq type=\'get\' id=\'at1\' from=\'alice@meet.example.com/web1\' to=\'room1@conference.meet.example.com/focus\'><query xmlns=\'http://jabber.org/protocol/muc#access-token\'/></iq>","room":"room1@conference.meet.example.com","room_exists":true,"meeting_id":"m","occupant":{"nick":"room1@conference.meet.example.com/a1","role":"moderator","affiliation":"owner"},"session":{}}',
        '{"id":10,"op":"occupant","event":"join","room":"room1@conference.meet.example.com","jid":"alice@meet.example.com/web1","nick":"room1@conference.meet.example.com/a1b2c3d4"}',
        '{"id":12,"op":"occupants","muc":"conference.meet.example.com","rooms":{"room1@conference.meet.example.com":[{"jid":"a@m/w","nick":"r@c/n"}],"room2@conference.meet.example.com":{}}}',
        '{"id":7,"op":"fly"}',
        '{"op":"ping"}',
        '[1]',
        'not json',
    ]
    for i, line in enumerate(lines):
        write("protocol_line", f"line-{i:02}", line)
    write("protocol_line", "non-utf8-room", b'{"id":9,"op":"auth","host":"h","room":"\xff\xfe","token":"t"}')


def room_pattern_seeds():
    cases = [
        ("room1", "^room%d+$"),
        ("[acme]room1", "^%[(%w+)%](.*)$"),
        ("abc", "(a)(b)(c)"),
        ("aaa", "a-b*c?"),
        ("THE (quick) fox", "%((%a+)%)"),
        ("x = [[ y ]]", "%b[]"),
        ("hello world", "%f[%w]%w+"),
        ("abab", "(ab)%1"),
        ("room-1.dev", "[%w%-%.]+"),
        ("caf\u00e9", "caf."),
        ("a" * 60, "(a*)*b"),
        ("a" * 200, "[" + "b" * 300 + "a]*$"),
        ("x", "[a-"),
        ("x", "%"),
        ("x", "()"),
        ("x", "(%1)"),
    ]
    for i, (subject, pattern) in enumerate(cases):
        write("room_pattern", f"case-{i:02}", subject + "\n" + pattern)


def token_seeds():
    # Raw tokens (byte 0 = 0): signed with another secret, or broken.
    import hmac
    def hs256(secret, header, claims):
        signed = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
        return signed + "." + b64url(sig)

    claims = {"iss": "iss1", "aud": "aud1", "exp": NOW + 3600, "nbf": NOW - 10, "iat": NOW - 10,
              "room": "*", "sub": "a.example",
              "context": {"user": {"id": "u1", "name": "Alice"}, "tenant": "acme", "room": {"regex": True}}}
    write("token", "raw-other-secret", b"\x00" + hs256(b"other", {"alg": "HS256", "typ": "JWT"}, claims).encode())
    write("token", "raw-none", b"\x00" + (b64url(b'{"alg":"none"}') + "." + b64url(json.dumps(claims).encode()) + ".").encode())
    write("token", "raw-garbage", b"\x00eyJ.eyJ.x")
    # Signed (byte 0 & 3 != 0): header \n claims \n room JID \n tamper bytes.
    def signed(flags, header, claims, room, tamper=b"\x05\x00\x07"):
        return bytes([flags]) + json.dumps(header).encode() + b"\n" + json.dumps(claims).encode() + b"\n" + room.encode() + b"\n" + tamper

    # Flags: bits 0-1 mode (0 raw), bits 2-3 host/key (a, b, c with es, c with ed), bit 4
    # context_required, bit 5 room join.
    write("token", "signed-a", signed(1, {"alg": "HS256", "typ": "JWT"}, claims, "room1@conference.a.example"))
    write("token", "signed-a-tenant", signed(1 | 16, {"alg": "HS256"}, dict(claims, room="room1"), "[acme]room1@conference.a.example"))
    write("token", "signed-a-regex", signed(1, {"alg": "HS256"}, dict(claims, room="^room%d+$"), "room12@conference.a.example"))
    write("token", "signed-b", signed(1 | 4, {"alg": "HS512", "typ": "jwt"}, {"iss": ["x", 1], "aud": "any", "room": "r1", "sub": "*"}, "r1@conference.b.example"))
    write("token", "signed-b-join", signed(1 | 4 | 32, {"alg": "HS256"}, {"iss": "x", "aud": "y", "exp": NOW - 100}, "r@muc"))
    write("token", "signed-expired", signed(2, {"alg": "HS256"}, dict(claims, exp=NOW - 31), "room1@conference.a.example"))
    write("token", "signed-array-iss", signed(3, {"alg": "HS256"}, dict(claims, iss=["iss1", "evil"]), "room1@conference.a.example"))
    write("token", "signed-floats", signed(1, {"alg": "HS256", "kid": "k"}, dict(claims, exp=1.8e9 + 0.5, nbf=-1e308), "x@y"))
    write("token", "signed-c-es", signed(1 | 8, {"alg": "ES256", "kid": "es", "typ": "JWT"}, dict(claims, sub="c.example"), "room1@conference.c.example"))
    write("token", "signed-c-ed", signed(1 | 12, {"alg": "EdDSA", "kid": "ed"}, dict(claims, room="room1"), "room1@conference.c.example"))
    write("token", "signed-c-wrong-kid", signed(1 | 8, {"alg": "ES256", "kid": "ed"}, claims, "room1@conference.c.example"))
    write("token", "signed-c-hs-kid", signed(1 | 8, {"alg": "HS256", "kid": "es"}, claims, "room1@conference.c.example"))
    write("token", "raw-c-none", b"\x08" + (b64url(b'{"alg":"none","kid":"es"}') + "." + b64url(json.dumps(claims).encode()) + ".").encode())


def access_token_seeds():
    claims = {"iss": "conference.meet.example.com", "aud": "api", "iat": NOW - 10, "exp": NOW + 60,
              "occupant": {"room": "r@conference.meet.example.com", "jid": "u@meet.example.com/x"}}
    def signed(flags, header, claims, tamper=b"\x09\x00\x0a"):
        return bytes([flags]) + json.dumps(header).encode() + b"\n" + json.dumps(claims).encode() + b"\n" + tamper

    write("access_token", "hs256", signed(1, {"alg": "HS256", "typ": "JWT"}, claims))
    write("access_token", "hs256-aud", signed(1 | 16, {"alg": "HS256"}, dict(claims, aud=["x", "api"])))
    write("access_token", "es256", signed(1 | 4, {"alg": "ES256", "kid": "es"}, claims))
    write("access_token", "eddsa", signed(1 | 8, {"alg": "EdDSA", "kid": "ed"}, claims))
    write("access_token", "eddsa-wrong-kid", signed(1 | 8, {"alg": "EdDSA", "kid": "es"}, claims))
    write("access_token", "crit", signed(1, {"alg": "HS256", "crit": ["exp"]}, claims))
    write("access_token", "no-exp", signed(1, {"alg": "HS256"}, {"iat": NOW}))
    write("access_token", "future-iat", signed(1, {"alg": "HS256"}, dict(claims, iat=NOW + 61)))
    write("access_token", "raw-none", b"\x00" + (b64url(b'{"alg":"none"}') + "." + b64url(json.dumps(claims).encode()) + ".").encode())
    write("access_token", "raw-hs-on-es", b"\x00" + (b64url(b'{"alg":"HS256","kid":"es"}') + "." + b64url(json.dumps(claims).encode()) + ".c2ln").encode())


def access_iq_seeds():
    stanzas = [
        "<iq type='get' id='at1' from='alice@meet.example.com/web1' to='room1@conference.meet.example.com/focus'><query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>",
        "<iq type='get' id='cr1' from='bob@meet.example.com/web2' to='meet.example.com'><credentials xmlns='urn:xmpp:extdisco:2'><service type='short-lived-token' host='file-sharing'/><service type='turn' host='t'/></credentials></iq>",
        "<iq type='set' id='a' from='u@h/r' to='room1@conference.meet.example.com'><query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>",
        "<iq type='get' id='a' from='u@h/r' to='room1@conference.meet.example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='get' id='a' to='r@conference.meet.example.com'><x xmlns='y'/></iq>",
        "<iq type='get' id='a' from='u@h/r' to='r@elsewhere'><x xmlns='y'/></iq>",
        "<iq xmlns='jabber:client' type='result' id='&lt;&amp;&quot;' from='meet.example.com' to='u@meet.example.com/r'/>",
        "<iq type='error' id='e' from='u@h/r' to='meet.example.com'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        "<message to='meet.example.com' from='u@h/r'/>",
    ]
    for i, stanza in enumerate(stanzas):
        write("access_iq", f"iq-{i:02}", stanza)


def main():
    only = set(sys.argv[1:])
    keep = {}
    if only and os.path.isdir(OUT):
        # Rebuild only the targets named; keep the others' seeds (and their keys) as they are.
        for target in os.listdir(OUT):
            if target not in only:
                keep[target] = {f: open(os.path.join(OUT, target, f), "rb").read() for f in os.listdir(os.path.join(OUT, target))}
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    with tempfile.TemporaryDirectory() as tmp:
        keys = Keys(tmp)
        key_seeds(keys)
        _, _, _, jwks = jwk_seeds(keys)
        key_fetch_seeds(keys, jwks)
    protocol_seeds()
    room_pattern_seeds()
    token_seeds()
    access_token_seeds()
    access_iq_seeds()
    for target, files in keep.items():
        shutil.rmtree(os.path.join(OUT, target), ignore_errors=True)
        for name, data in files.items():
            write(target, name, data)
    for target in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, target))
        size = sum(os.path.getsize(os.path.join(OUT, target, f)) for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
