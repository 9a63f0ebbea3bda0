// A real authorization server for the introspection interop check (docs/interop.md, issue 13):
// node oidc-provider 9.x issuing certificate-bound access tokens (RFC 8705) by client_credentials,
// opaque for client `interop-opaque` and JWT for client `interop-jwt` (same audience), with the
// RFC 7662 introspection endpoint open to two resource-server clients: `rs-basic`
// (client_secret_basic) and `rs-mtls` (tls_client_auth, subject CN=rs-mtls). HTTPS on 127.0.0.1.
//
//   node oidc-provider-introspection-as.mjs
//   (env: AS_PORT=9443, AS_CERT=as.pem, AS_KEY=as.key, CLIENT_CAS=dev/ca.pem:rs-ca.pem)
import https from 'node:https';
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const port = Number(process.env.AS_PORT ?? 9443);
const issuer = `https://127.0.0.1:${port}`;
const audience = 'https://api.example';
const signing = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(signing.privateKey)), alg: 'ES256', use: 'sig' };

const caller = (client_id, format) => ({
  client_id,
  client_secret: `${client_id}-secret-not-a-real-one`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  tls_client_certificate_bound_access_tokens: true, // the token is bound to the TLS client cert
  id_token_signed_response_alg: 'ES256',
  'urn:example:format': format,
});

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  extraClientMetadata: { properties: ['urn:example:format'] },
  clientAuthMethods: ['client_secret_basic', 'tls_client_auth'],
  clients: [
    caller('interop-opaque', 'opaque'),
    caller('interop-jwt', 'jwt'),
    { client_id: 'rs-basic', client_secret: 'rs-basic-secret-not-a-real-one', grant_types: [],
      redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256' },
    { client_id: 'rs-mtls', grant_types: [], redirect_uris: [], response_types: [],
      token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=rs-mtls',
      id_token_signed_response_alg: 'ES256' },
  ],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      getCertificate(ctx) {
        const peer = ctx.socket.getPeerCertificate(false);
        return peer?.raw ? new crypto.X509Certificate(peer.raw) : undefined;
      },
      certificateAuthorized: (ctx) => ctx.socket.authorized,
      certificateSubjectMatches(ctx, property, expected) {
        const subject = ctx.socket.getPeerCertificate(false)?.subject;
        return property === 'tls_client_auth_subject_dn' && `CN=${subject?.CN}` === expected;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      getResourceServerInfo: (_ctx, resource, client) => {
        if (resource !== audience) throw new Error(`unknown resource ${resource}`);
        return {
          scope: 'api:read',
          audience,
          accessTokenFormat: client['urn:example:format'],
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

const ca = (process.env.CLIENT_CAS ?? 'dev/ca.pem:rs-ca.pem').split(':').map((p) => fs.readFileSync(p));
https
  .createServer({
    cert: fs.readFileSync(process.env.AS_CERT ?? 'as.pem'),
    key: fs.readFileSync(process.env.AS_KEY ?? 'as.key'),
    ca,
    requestCert: true,          // ask every client for a certificate, decide per endpoint
    rejectUnauthorized: false,
  }, provider.callback())
  .listen(port, '127.0.0.1', () => console.log(`oidc-provider listening, issuer ${issuer}`));
