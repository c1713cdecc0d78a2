// Handsign tokens seen by npm `jose`, an independent JOSE implementation.
//
// Called by tests/interop.rs. Each command prints its result on stdout; a refusal prints the
// reason on stderr and exits 1.
//
//   verify JWKS_FILE TOKEN ISSUER AUDIENCE   verify a token against a JWKS, print its claims
//   mint PRIVATE_JWK_FILE CLAIMS_FILE        sign claims as a Handsign approval token, print it
//   thumbprint JWK_FILE                      the RFC 7638 thumbprint of a JWK
//   dpop-verify PROOF                        verify a DPoP proof with the key in its header,
//                                            print its claims and the key's thumbprint

import { readFileSync } from 'node:fs';
import {
  EmbeddedJWK, SignJWT, calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader,
  importJWK, jwtVerify,
} from 'jose';

const TYP = 'handsign-approval+jwt';
const load = (path) => JSON.parse(readFileSync(path, 'utf8'));

const commands = {
  async verify(jwksFile, token, issuer, audience) {
    const keys = createLocalJWKSet(load(jwksFile));
    const { payload } = await jwtVerify(token, keys, {
      algorithms: ['EdDSA'], typ: TYP, issuer, audience,
      requiredClaims: ['exp', 'iat', 'nbf', 'jti', 'sub'],
    });
    return JSON.stringify(payload);
  },
  async mint(privateJwkFile, claimsFile) {
    const jwk = load(privateJwkFile);
    const key = await importJWK(jwk, 'EdDSA');
    return new SignJWT(load(claimsFile))
      .setProtectedHeader({ alg: 'EdDSA', typ: TYP, kid: jwk.kid })
      .sign(key);
  },
  async thumbprint(jwkFile) {
    return calculateJwkThumbprint(load(jwkFile), 'sha256');
  },
  async 'dpop-verify'(proof) {
    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
      algorithms: ['EdDSA'], typ: 'dpop+jwt',
    });
    const jkt = await calculateJwkThumbprint(protectedHeader.jwk, 'sha256');
    return JSON.stringify({ claims: payload, jkt, header: decodeProtectedHeader(proof) });
  },
};

const [command, ...args] = process.argv.slice(2);
try {
  console.log(await commands[command](...args));
} catch (e) {
  console.error(`refused: ${e.code ?? e.name}: ${e.message}`);
  process.exit(1);
}
