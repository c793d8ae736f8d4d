// Verify a scanlogin login token in your backend, with `jose` and our public keys.
//
//   (cd examples/verify-token && npm ci)
//   node examples/verify-token/verify.mjs http://127.0.0.1:8080 "$TOKEN"
//
// Prints the token's claims when its signature, issuer, audience and expiry hold; exits 1
// otherwise. createRemoteJWKSet fetches /.well-known/jwks.json (and caches it) and picks
// the key the token's `kid` names; no secret of scanlogin's is needed. A logged-out token
// still verifies until it expires: ask GET /api/v1/me with it when revocation matters.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [base, token] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL('/.well-known/jwks.json', base));
try {
  const { payload } = await jwtVerify(token, keys, {
    algorithms: ['ES256', 'EdDSA', 'RS256'], // what token.algorithm may be; never HS256 or none
    issuer: 'scanlogin', // token.issuer
    audience: 'scanlogin', // token.audience
    requiredClaims: ['exp', 'iat', 'sub', 'jti'],
  });
  console.log(JSON.stringify(payload));
} catch (e) {
  console.error(`invalid token: ${e.message}`);
  process.exit(1);
}
