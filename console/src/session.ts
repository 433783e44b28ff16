/** Who the console calls as: the credential lives in sessionStorage (gone when the tab closes). */

import { Code, ConnectError, createRenderClient, type Protocol, type RenderClient, type RenderClientOptions } from "@render-pipeline/client";

const CREDENTIAL = "render-console.credential";
const PROTOCOL = "render-console.protocol";

export interface Session {
  credential: string;
  protocol: Protocol;
  client: RenderClient;
}

/** The window event sent when the server no longer accepts a session's credential (revoked,
 * expired), its `detail` that credential: the app then forgets it, if it is still the tab's, and
 * shows the sign-in form again. */
export const CREDENTIAL_REFUSED = "render-console:credential-refused";

type Interceptor = NonNullable<RenderClientOptions["interceptors"]>[number];

function noticeRefusal(credential: string): Interceptor {
  const notice = (e: unknown) => {
    if (ConnectError.from(e).code === Code.Unauthenticated) {
      window.dispatchEvent(new CustomEvent(CREDENTIAL_REFUSED, { detail: credential }));
    }
  };
  // A stream's error comes while its messages are read, after `next` has returned: a watch ends
  // UNAUTHENTICATED mid-stream once its key is revoked or its token expires.
  async function* watched<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
    try {
      yield* messages;
    } catch (e) {
      notice(e);
      throw e;
    }
  }
  return (next) => async (request) => {
    try {
      const response = await next(request);
      return response.stream ? { ...response, message: watched(response.message) } : response;
    } catch (e) {
      notice(e);
      throw e;
    }
  };
}

/** The credential the tab keeps (null: none). */
export function keptCredential(): string | null {
  return sessionStorage.getItem(CREDENTIAL);
}

function open(credential: string, protocol: Protocol): Session {
  // API keys read rk_<id>_<secret>; anything else is a JWT. Both go as the bearer token.
  const who = credential.startsWith("rk_") ? { apiKey: credential } : { token: credential };
  const client = createRenderClient({
    baseUrl: window.location.origin,
    protocol,
    ...who,
    interceptors: [noticeRefusal(credential)],
  });
  return { credential, protocol, client };
}

export function loadSession(): Session | null {
  const credential = keptCredential();
  if (!credential) {
    return null;
  }
  const protocol = sessionStorage.getItem(PROTOCOL) === "grpc-web" ? "grpc-web" : "connect";
  return open(credential, protocol);
}

/** A session for a credential, not yet checked or kept (see keepSession). */
export function newSession(credential: string, protocol: Protocol): Session {
  return open(credential.trim(), protocol);
}

export function keepSession(session: Session): void {
  sessionStorage.setItem(CREDENTIAL, session.credential);
  sessionStorage.setItem(PROTOCOL, session.protocol);
}

export function clearSession(): void {
  sessionStorage.removeItem(CREDENTIAL);
  sessionStorage.removeItem(PROTOCOL);
}
