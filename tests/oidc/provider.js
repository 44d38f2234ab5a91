// SPDX-License-Identifier: GPL-3.0-or-later
// A real OpenID provider (panva/oidc-provider, from the npm registry) for the Hub's login tests.
// One confidential client that must use PKCE; any login name signs in (the provider's own
// development login and consent pages); groups come from the table below.
// Environment: ISSUER (its base URL), PORT, CLIENT_SECRET, REDIRECT_URIS (JSON list).
// Prints "listening <port>" when it serves.
import Provider from 'oidc-provider';

const groups = { alice: ['dev'], bob: ['dev'], carol: ['dev', 'admins'], mallory: ['guests'] };

const configuration = {
  clients: [{
    client_id: 'lockbox',
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: JSON.parse(process.env.REDIRECT_URIS),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
  cookies: { keys: ['lockbox-test-only-cookie-key'] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, groups: groups[id] || [] };
      },
    };
  },
};

const provider = new Provider(process.env.ISSUER, configuration);
provider.on('server_error', (_ctx, error) => console.error('server_error', error));
const server = provider.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
