// A real OpenID Connect provider for the tests: the npm package oidc-provider, configured from the
// JSON file named by argv[2] (issuer, port, TLS files, signing keys, clients, accounts).
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  jwks: cfg.jwks,
  cookies: { keys: ['campusvpn-tests-cookie-key'] },
  pkce: { required: () => true },
  conformIdTokenClaims: false, // the profile claims in the ID token, as university IdPs send them
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'affiliation'],
    email: ['email'],
  },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = cfg.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
const server = https.createServer(
  { cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) },
  provider.callback(),
);
server.listen(cfg.port, '127.0.0.1', () => console.log('ready'));
