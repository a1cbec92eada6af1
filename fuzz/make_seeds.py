#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere).

The seeds are small, meaningful inputs: tokens the signer issues and the
classic attacks on them, Basic credentials, a users file and a journal as
the programs write them. Regenerating gives the same files."""
import base64, hashlib, hmac, json, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = b"iwsec-fuzz-verify-key-0123456789abcdef"  # fuzz_verify.cpp's kSecret
NOW = 1700000000


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(header, payload, key=KEY):
    si = b64u(header) + b"." + b64u(payload)
    return si + b"." + b64u(hmac.new(key, si, hashlib.sha256).digest())


SUB = json.dumps(json.dumps({"email": "alice@example.com", "scope": {"action": "password"}}))
JTI = '"0b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10"'
USER_ID = '"5f1c0a2b3c4d5e6f70819203"'


def payload(iat=NOW - 10, exp=NOW + 890, extra=""):
    return ('{"iat":%s,"sub":%s,"jti":%s,"exp":%s,"gen":0,"user_id":%s%s}' % (iat, SUB, JTI, exp, USER_ID, extra)).encode()


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    hs = b'{"alg":"HS256"}'
    # fuzz_verify, raw mode: byte 0 even, byte 1 leeway.
    raw = {
        "valid": token(hs, payload()),
        "valid_typ": token(b'{"alg":"HS256","typ":"JWT"}', payload()),
        "valid_kid": token(b'{"alg":"HS256","kid":"k1"}', payload()),
        "expired": token(hs, payload(exp=NOW - 1)),
        "alg_none": b64u(b'{"alg":"none"}') + b"." + b64u(payload()) + b".",
        "alg_hs512": token(b'{"alg":"HS512"}', payload()),
        "crit": token(b'{"alg":"HS256","crit":["exp"]}', payload()),
        "padded": token(hs, payload()) + b"==",
        "two_segments": b64u(hs) + b"." + b64u(payload()),
        "dots": b"." * 64,
    }
    for name, t in raw.items():
        write("fuzz_verify", "raw_" + name, b"\x00\x00" + t)
    # fuzz_verify, signed mode: byte 0 odd; header JSON \n payload JSON.
    signed = {
        "valid": hs + b"\n" + payload(),
        "nbf_future": hs + b"\n" + payload(extra=',"nbf":%d' % (NOW + 100)),
        "iat_future": hs + b"\n" + payload(iat=NOW + 100),
        "exp_fraction": hs + b"\n" + payload(exp="1700000900.5"),
        "exp_huge": hs + b"\n" + payload(exp="1e309"),
        "exp_2p63": hs + b"\n" + payload(exp="9223372036854775808"),
        "exp_string": hs + b"\n" + payload(exp='"1700000900"'),
        "dup_exp": hs + b"\n" + payload(extra=',"exp":1'),
        "jku": b'{"alg":"HS256","jku":"https://evil.example/jwks"}\n' + payload(),
        "kid_k1": b'{"alg":"HS256","kid":"k1"}\n' + payload(),
        "kid_old": b'{"alg":"HS256","kid":"old"}\n' + payload(),
        "nested": hs + b"\n" + b'{"a":' * 40 + b"1" + b"}" * 40,
        "user_id_number": hs + b"\n" + payload().replace(USER_ID.encode(), b"7"),
        "user_id_dup": hs + b"\n" + payload(extra=',"user_id":"x"'),
        "no_user_id": hs + b"\n" + payload().replace(b',"user_id":' + USER_ID.encode(), b""),
        "array": hs + b"\n[1,2,3]",
    }
    for name, t in signed.items():
        write("fuzz_verify", "signed_" + name, b"\x01\x05" + t)

    # fuzz_base64
    for name, t in {"url": b"SGVsbG8td29ybGRf", "std": b"dXNlcjpwYXNz", "pad1": b"YQ==", "pad2": b"YWI=",
                    "noncanon": b"YR==", "plus": b"+/+/", "empty": b""}.items():
        write("fuzz_base64", name, t)

    # fuzz_basic_credentials: header values, '\n' between several.
    b = lambda s: base64.b64encode(s)
    for name, t in {
        "basic": b"Basic " + b(b"alice@example.com:correct horse"),
        "colons": b"basic " + b(b"a@b.c:pa:ss:word"),
        "no_colon": b"Basic " + b(b"no-colon"),
        "nul": b"Basic " + b(b"a@b.c\x00:pw\x01\x7f"),
        "bad_utf8": b"Basic " + b(b"\xc3\x28@b.c:\xff\xfe"),
        "bearer": b"Bearer " + token(hs, payload()),
        "empty_basic": b"Basic   ",
        "two": b"Basic " + b(b"a:b") + b"\nBearer x",
        "not_base64": b"Basic !!!!",
    }.items():
        write("fuzz_basic_credentials", name, t)

    # fuzz_users_file: the format JsonFileUserStore writes.
    user = {"user_id": "0b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10", "email": "alice@example.com",
            "password_hash": "$pbkdf2-sha256$1000$c2FsdHNhbHQ$" + "A" * 43,
            "refresh_token_sha256": hashlib.sha256(b"refresh").hexdigest(), "refresh_generation": 2,
            "disabled": False}
    write("fuzz_users_file", "one_user", json.dumps({"version": 1, "users": [user]}, indent=2).encode())
    write("fuzz_users_file", "empty", b'{"version":1,"users":[]}')
    dup = dict(user, user_id="1b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10", email="ALICE@example.com")
    write("fuzz_users_file", "duplicate_email", json.dumps({"version": 1, "users": [user, dup]}).encode())
    write("fuzz_users_file", "version2", b'{"version":2,"users":[]}')

    # fuzz_journal: "jti exp\n" lines, the last one possibly torn.
    write("fuzz_journal", "lines", b"0b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10 1700000900\n"
          b"1b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10 1600000000\n")
    write("fuzz_journal", "torn", b"a 1700000900\nb 17000")
    write("fuzz_journal", "owned", b"0b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10 1700000900 5f1c0a2b3c4d5e6f70819203\n"
          b"1b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10 1700000900 sha256:" + b"ab" * 32 + b"\n"
          b"2b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10 1700000900 two words\n")
    write("fuzz_journal", "junk", b" 5\nx\ny -1\nz 99999999999999999999\nw 1700000900x\n")


if __name__ == "__main__":
    main()
