// A real OpenID Connect provider on localhost for tests/test_browser_login.py: oidc-provider with
// its development sign-in form (any login, any password; the login becomes the user's e-mail) and
// one confidential client, the lab's Streamlit login. Usage: node provider.mjs PORT REDIRECT_URI
// CLIENT_ID CLIENT_SECRET. Prints "ready" once it listens.
import Provider from "oidc-provider";

const [port, redirectUri, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: [redirectUri],
              response_types: ["code"], grant_types: ["authorization_code"] }],
  // Streamlit reads the user from the ID token alone: put the e-mail in it, not only in /userinfo.
  conformIdTokenClaims: false,
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: id, email_verified: true, name: id.split("@")[0] }),
  }),
  pkce: { required: () => false },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["test-only-cookie-key"] },
});
provider.listen(Number(port), "127.0.0.1", () => console.log("ready"));
