// An OpenID Provider for Rampart's end-to-end test, built on panva/oidc-provider with its default
// claims handling: in the authorization code flow the ID token carries no scope claims (`email`,
// `email_verified` arrive only from the UserInfo endpoint), as with many hosted providers.
//
// It listens on 127.0.0.1 on a free port, prints one line `{"issuer": "http://127.0.0.1:PORT"}`,
// then reads one line from stdin: the client's redirect URI (Rampart's callback, known only once
// Rampart runs with this issuer in its configuration). Environment: SUB, EMAIL of the one user.
// The user "signs in" and consents without a page: each interaction is finished at once.
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const sub = process.env.SUB || 'node-user-1';
const email = process.env.EMAIL || 'node-oidc@example.com';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
console.log(JSON.stringify({ issuer }));

const lines = readline.createInterface({ input: process.stdin });
const redirectUri = (await lines[Symbol.asyncIterator]().next()).value?.trim();
if (!redirectUri) {
  console.error('expected the redirect URI on stdin');
  process.exit(2);
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'rampart-test',
      client_secret: 's3cret',
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email, email_verified: true };
      },
    };
  },
  cookies: { keys: ['rampart-test-cookie-key'] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
});
// Loopback HTTP only: the test talks to it directly.
provider.proxy = false;

server.on('request', async (req, res) => {
  const m = req.url.match(/^\/interaction\/([^/?]+)/);
  if (!m) {
    provider.callback()(req, res);
    return;
  }
  try {
    const details = await provider.interactionDetails(req, res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: sub } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

console.log('ready');
