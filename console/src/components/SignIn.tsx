/** Sign in with an API key or a JWT, checked with a cheap call before it is kept. */

import { useRef, useState, type FormEvent } from "react";

import type { Protocol } from "@render-pipeline/client";
import { describe } from "../errors";
import { keepSession, newSession, type Session } from "../session";
import { Alert, Button, Field } from "./ui";

export function SignIn({ onSignedIn, notice = "" }: { onSignedIn: (session: Session) => void; notice?: string }) {
  const [credential, setCredential] = useState("");
  const [protocol, setProtocol] = useState<Protocol>("connect");
  const [error, setError] = useState("");
  const [checking, setChecking] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const refuse = (message: string) => {
    setError(message);
    input.current?.focus();
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!credential.trim()) {
      refuse("Paste an API key (rk_…) or a JWT.");
      return;
    }
    setChecking(true);
    setError("");
    const session = newSession(credential, protocol);
    try {
      await session.client.getBalance({});
      keepSession(session);
      onSignedIn(session);
    } catch (e) {
      refuse(describe(e));
    } finally {
      setChecking(false);
    }
  };

  return (
    <main className="sign-in">
      <form className="card stack" onSubmit={submit}>
        <div>
          <h1>Render console</h1>
          <p className="muted">Your room, re-covered with a real product.</p>
        </div>
        <Field
          label="API key or JWT"
          htmlFor="credential"
          hint={
            <>
              Running <code>make run</code>? Use the development key: <code>cat var/stack/dev-api-key</code>. The key is kept in
              this tab only (sessionStorage).
            </>
          }
        >
          <input
            id="credential"
            ref={input}
            aria-invalid={!!error || undefined}
            aria-describedby={error ? "sign-in-error" : undefined}
            name="credential"
            type="password"
            autoComplete="off"
            spellCheck={false}
            placeholder="rk_…"
            value={credential}
            onChange={(e) => setCredential(e.target.value)}
          />
        </Field>
        <details className="advanced">
          <summary>Protocol</summary>
          <select aria-label="Protocol" value={protocol} onChange={(e) => setProtocol(e.target.value as Protocol)}>
            <option value="connect">Connect</option>
            <option value="grpc-web">gRPC-web</option>
          </select>
        </details>
        {notice && !error && <Alert kind="warning">{notice}</Alert>}
        {error && <Alert id="sign-in-error">{error}</Alert>}
        <Button type="submit" variant="primary" loading={checking} className="btn-block" data-testid="sign-in">
          Sign in
        </Button>
      </form>
    </main>
  );
}
