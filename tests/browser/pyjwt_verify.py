"""An approval token collected after a browser approval, checked by PyJWT against the gateway's
live JWKS. Called by tests/browser.rs with the Python environment scripts/test creates.

  pyjwt_verify.py JWKS_URL TOKEN ISSUER AUDIENCE PARAMS_SHA256 LIFETIME

Prints the token's claims as JSON when every check holds; otherwise prints the failed check on
stderr and exits 1.
"""

import json
import sys
import urllib.request

import jwt

TYP = "handsign-approval+jwt"


def main(jwks_url, token, issuer, audience, params_sha256, lifetime):
    header = jwt.get_unverified_header(token)
    if header.get("typ") != TYP:
        raise SystemExit(f"wrong typ {header.get('typ')!r}")
    if header.get("alg") != "EdDSA":
        raise SystemExit(f"wrong alg {header.get('alg')!r}")
    with urllib.request.urlopen(jwks_url, timeout=10) as answer:
        key_set = jwt.PyJWKSet.from_dict(json.load(answer))
    keys = [k for k in key_set.keys if k.key_id == header.get("kid")]
    if len(keys) != 1:
        raise SystemExit(f"kid {header.get('kid')!r} is not in the JWKS at {jwks_url}")
    claims = jwt.decode(
        token,
        key=keys[0],
        algorithms=["EdDSA"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "nbf", "jti", "sub", "params_sha256"]},
    )
    if claims["params_sha256"] != params_sha256:
        raise SystemExit(f"params_sha256 {claims['params_sha256']!r}, expected {params_sha256!r}")
    if claims["exp"] - claims["iat"] != int(lifetime):
        raise SystemExit(f"exp - iat is {claims['exp'] - claims['iat']}, expected {lifetime}")
    print(json.dumps(claims))


if __name__ == "__main__":
    if len(sys.argv) != 7:
        raise SystemExit(__doc__)
    try:
        main(*sys.argv[1:])
    except jwt.PyJWTError as e:
        raise SystemExit(f"PyJWT refused the token: {type(e).__name__}: {e}")
