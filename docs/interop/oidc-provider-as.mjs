// A real authorization server for the DPoP interop check (docs/interop.md):
// node oidc-provider 9.x with DPoP on, client_credentials, JWT access tokens for
// the resource https://api.example, served over HTTPS on 127.0.0.1 only.
//
//   node oidc-provider-as.mjs   (env: AS_PORT=9443, AS_CERT=as.pem, AS_KEY=as.key)
//
// Its signing keys are generated at start-up and live only in memory.
import https from 'node:https';
import fs from 'node:fs';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const port = Number(process.env.AS_PORT ?? 9443);
const issuer = `https://127.0.0.1:${port}`;
const alg = process.env.AS_ALG ?? 'ES256'; // the access tokens' signing alg

const signing = await generateKeyPair(alg, { extractable: true });
// no kid: oidc-provider sets it to the key's RFC 7638 thumbprint, so a restart means a new kid
const jwk = { ...(await exportJWK(signing.privateKey)), alg, use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: 'interop-client',
    client_secret: 'interop-client-secret-not-a-real-one',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg, // else RS256, and there is no RSA key when AS_ALG=ES256
  }],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true }, // spelled dPoP in oidc-provider 9 (on by default); `dpop` is refused as unknown
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.example',
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        if (resourceIndicator !== 'https://api.example') throw new Error(`unknown resource ${resourceIndicator}`);
        return {
          scope: 'api:read',
          audience: 'https://api.example',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg } },
        };
      },
    },
  },
});

https
  .createServer({ cert: fs.readFileSync(process.env.AS_CERT ?? 'as.pem'), key: fs.readFileSync(process.env.AS_KEY ?? 'as.key') }, provider.callback())
  .listen(port, '127.0.0.1', () => console.log(`oidc-provider listening, issuer ${issuer}`));
