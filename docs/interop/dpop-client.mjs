// The client side of the DPoP interop check (docs/interop.md). Proofs come from the
// independent `dpop` package (panva/dpop) and, for the "other key" case, from `jose`.
//
//   node dpop-client.mjs [ALG]      ALG: ES256 (default), PS256, RS256 or Ed25519
//   env: AS=https://127.0.0.1:9443  AS_CA=as.pem  API=https://localhost:8443/api/hello  API_CA=<dev ca.pem>
//        NONCE_RETRY=1  retry once with the DPoP-Nonce the API answers with
//
// Gets a DPoP-bound JWT access token from oidc-provider with client_credentials, then calls the
// API: a fresh proof (expect 200), a proof by another key (401 invalid_token), the first proof
// again (401 invalid_dpop_proof). Prints status lines and challenges, never a token or a proof
// (it writes the last good token and proof to token.jwt / proof.jwt for `certbound inspect`).
import https from 'node:https';
import fs from 'node:fs';
import * as DPoP from 'dpop';
import * as jose from 'jose';

const alg = process.argv[2] ?? 'ES256';
const AS = process.env.AS ?? 'https://127.0.0.1:9443';
const API = process.env.API ?? 'https://localhost:8443/api/hello';
const asCa = fs.readFileSync(process.env.AS_CA ?? 'as.pem');
const apiCa = fs.readFileSync(process.env.API_CA);

function request(url, { method = 'GET', headers = {}, body, ca }) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

function show(label, res) {
  console.log(`${label}: HTTP ${res.status}`);
  for (const h of ['www-authenticate', 'dpop-nonce', 'retry-after']) {
    if (res.headers[h]) console.log(`  ${h}: ${h === 'dpop-nonce' ? '<nonce>' : res.headers[h]}`);
  }
  if (res.status === 200) console.log(`  body: ${res.body.trim()}`);
}

// 1. a DPoP key and a token bound to it
const key = await DPoP.generateKeyPair(alg);
const jkt = await DPoP.calculateThumbprint(key.publicKey);
const tokenRes = await request(`${AS}/token`, {
  method: 'POST',
  ca: asCa,
  headers: {
    'content-type': 'application/x-www-form-urlencoded',
    authorization: `Basic ${Buffer.from('interop-client:interop-client-secret-not-a-real-one').toString('base64')}`,
    dpop: await DPoP.generateProof(key, `${AS}/token`, 'POST'),
  },
  body: new URLSearchParams({ grant_type: 'client_credentials', resource: 'https://api.example', scope: 'api:read' }).toString(),
});
if (tokenRes.status !== 200) {
  console.log(`token endpoint: HTTP ${tokenRes.status} ${tokenRes.body}`);
  process.exit(1);
}
const { access_token: token, token_type: tokenType } = JSON.parse(tokenRes.body);
const header = jose.decodeProtectedHeader(token);
const claims = jose.decodeJwt(token);
console.log(`token endpoint: HTTP 200, token_type ${tokenType}, typ ${header.typ}, alg ${header.alg}, aud ${claims.aud}, cnf.jkt ${claims.cnf?.jkt} (client's jkt ${jkt}: ${claims.cnf?.jkt === jkt ? 'same' : 'DIFFERENT'})`);
fs.writeFileSync('token.jwt', token);

let nonce; // the latest DPoP-Nonce the API sent (with --dpop-nonce-key)
async function call(label, proof) {
  const res = await request(API, { ca: apiCa, headers: { authorization: `DPoP ${token}`, dpop: proof } });
  show(label, res);
  nonce = res.headers['dpop-nonce'] ?? nonce;
  return res;
}

// 2. a fresh proof from `dpop` → 200 (with server nonces: 401 use_dpop_nonce, then retry → 200)
let proof = await DPoP.generateProof(key, API, 'GET', undefined, token);
let res = await call('fresh proof', proof);
if (res.status === 401 && res.headers['dpop-nonce'] && process.env.NONCE_RETRY) {
  proof = await DPoP.generateProof(key, API, 'GET', nonce, token);
  res = await call('fresh proof with the DPoP-Nonce', proof);
}
fs.writeFileSync('proof.jwt', proof);

// 3. the same token, a proof signed by another key (made with `jose` directly) → 401 invalid_token
const other = await jose.generateKeyPair('ES256', { extractable: true });
const otherProof = await new jose.SignJWT({
  htm: 'GET',
  htu: API,
  ath: jose.base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token)))),
  ...(nonce ? { nonce } : {}),
})
  .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await jose.exportJWK(other.publicKey) })
  .setIssuedAt()
  .setJti(crypto.randomUUID())
  .sign(other.privateKey);
await call('proof by another key', otherProof);

// 4. the first good proof again → 401 invalid_dpop_proof (replay)
await call('same proof replayed', proof);
