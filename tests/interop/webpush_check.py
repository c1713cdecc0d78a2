"""Handsign's Web Push messages seen by independent implementations: PyJWT (VAPID, RFC 8292) and
http_ece (message encryption, RFC 8291 / RFC 8188 aes128gcm).

Called by tests/webpush.rs. Each command prints its result on stdout; a refusal prints the reason
on stderr and exits 1.

  vapid AUTHORIZATION AUDIENCE [NOW]  verify a `vapid t=..., k=...` header as a push service
                                      would (ES256, aud, exp within 24 h, sub); NOW fixes the
                                      clock (unix seconds); print the claims as JSON
  decrypt BODY_FILE D AUTH            decrypt a body with the receiver's private scalar D and
                                      auth secret (base64url); write the plaintext to stdout
  encrypt PLAINTEXT_FILE P256DH AUTH RS
                                      encrypt to a subscription's keys (base64url) with record
                                      size RS; print the body as base64url
"""

import base64
import json
import sys
import time

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid(authorization, audience, now=None):
    if not authorization.startswith("vapid "):
        raise SystemExit(f"not a vapid authorization: {authorization!r}")
    params = dict(
        part.strip().split("=", 1) for part in authorization[len("vapid ") :].split(",")
    )
    token, k = params["t"], params["k"]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(k))
    header = jwt.get_unverified_header(token)
    if header.get("alg") != "ES256" or header.get("typ") != "JWT":
        raise SystemExit(f"unexpected JWT header {header!r}")
    options = {"require": ["aud", "exp", "sub"]}
    if now is not None:
        options["verify_exp"] = False
    claims = jwt.decode(
        token, key=public, algorithms=["ES256"], audience=audience, options=options
    )
    clock = time.time() if now is None else int(now)
    if now is not None and claims["exp"] <= clock:
        raise SystemExit(f"expired: exp {claims['exp']} <= now {clock}")
    if claims["exp"] > clock + 24 * 3600:
        raise SystemExit(f"exp {claims['exp']} more than 24 h ahead")
    if not (claims["sub"].startswith("mailto:") or claims["sub"].startswith("https://")):
        raise SystemExit(f"sub {claims['sub']!r} is neither mailto: nor https:")
    print(json.dumps(claims))


def decrypt(body_file, d, auth):
    with open(body_file, "rb") as f:
        body = f.read()
    private = ec.derive_private_key(int.from_bytes(b64d(d), "big"), ec.SECP256R1())
    plain = http_ece.decrypt(
        body, private_key=private, auth_secret=b64d(auth), version="aes128gcm"
    )
    sys.stdout.buffer.write(plain)


def encrypt(plaintext_file, p256dh, auth, rs):
    with open(plaintext_file, "rb") as f:
        plain = f.read()
    sender = ec.generate_private_key(ec.SECP256R1())
    body = http_ece.encrypt(
        plain,
        private_key=sender,
        dh=b64d(p256dh),
        auth_secret=b64d(auth),
        rs=int(rs),
        version="aes128gcm",
    )
    print(b64e(body))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    try:
        {"vapid": vapid, "decrypt": decrypt, "encrypt": encrypt}[command](*args)
    except SystemExit:
        raise
    except Exception as e:  # a refusal, reported to the Rust test
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
