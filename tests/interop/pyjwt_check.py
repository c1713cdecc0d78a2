"""Handsign tokens seen by PyJWT, an independent JOSE implementation.

Called by tests/interop.rs. Each command prints its result on stdout; a refusal prints the
reason on stderr and exits 1.

  verify JWKS_FILE TOKEN ISSUER AUDIENCE   verify a token against a JWKS, print its claims as JSON
  mint PRIVATE_JWK_FILE CLAIMS_FILE        sign claims as a Handsign approval token, print it
  forge-none CLAIMS_FILE KID               an unsigned (alg none) token
  forge-hs256 PUBLIC_JWK_FILE CLAIMS_FILE  an HS256 token keyed with the public key's bytes
  dpop-verify PROOF                        verify a DPoP proof with the key in its header
"""

import base64
import json
import sys

import jwt

TYP = "handsign-approval+jwt"


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def verify(jwks_file, token, issuer, audience):
    header = jwt.get_unverified_header(token)
    if header.get("typ") != TYP:
        raise SystemExit(f"wrong typ {header.get('typ')!r}")
    key_set = jwt.PyJWKSet.from_dict(load(jwks_file))
    key = next(k for k in key_set.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        token,
        key=key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "nbf", "jti", "sub"]},
    )
    print(json.dumps(claims))


def mint(private_jwk_file, claims_file):
    jwk = load(private_jwk_file)
    key = jwt.PyJWK(jwk).key
    headers = {"typ": TYP, "kid": jwk["kid"]}
    print(jwt.encode(load(claims_file), key, algorithm="EdDSA", headers=headers))


def forge_none(claims_file, kid):
    headers = {"typ": TYP, "kid": kid}
    print(jwt.encode(load(claims_file), None, algorithm="none", headers=headers))


def forge_hs256(public_jwk_file, claims_file):
    jwk = load(public_jwk_file)
    secret = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    headers = {"typ": TYP, "kid": jwk["kid"]}
    print(jwt.encode(load(claims_file), secret, algorithm="HS256", headers=headers))


def dpop_verify(proof):
    header = jwt.get_unverified_header(proof)
    if header.get("typ") != "dpop+jwt":
        raise SystemExit(f"wrong typ {header.get('typ')!r}")
    key = jwt.PyJWK(header["jwk"]).key
    print(json.dumps(jwt.decode(proof, key=key, algorithms=["EdDSA"])))


COMMANDS = {
    "verify": verify,
    "mint": mint,
    "forge-none": forge_none,
    "forge-hs256": forge_hs256,
    "dpop-verify": dpop_verify,
}

if __name__ == "__main__":
    try:
        COMMANDS[sys.argv[1]](*sys.argv[2:])
    except jwt.PyJWTError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
