/** Who the console calls as: the credential lives in sessionStorage (gone when the tab closes). */

import { createRenderClient, type Protocol, type RenderClient } from "@render-pipeline/client";

const CREDENTIAL = "render-console.credential";
const PROTOCOL = "render-console.protocol";

export interface Session {
  credential: string;
  protocol: Protocol;
  client: RenderClient;
}

function open(credential: string, protocol: Protocol): Session {
  // API keys read rk_<id>_<secret>; anything else is a JWT. Both go as the bearer token.
  const who = credential.startsWith("rk_") ? { apiKey: credential } : { token: credential };
  const client = createRenderClient({ baseUrl: window.location.origin, protocol, ...who });
  return { credential, protocol, client };
}

export function loadSession(): Session | null {
  const credential = sessionStorage.getItem(CREDENTIAL);
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
