import { useEffect, useState } from "react";

import { JobList } from "./components/JobList";
import { JobView } from "./components/JobView";
import { RoomForm } from "./components/RoomForm";
import { SignIn } from "./components/SignIn";
import { SwapForm } from "./components/SwapForm";
import { TextureForm } from "./components/TextureForm";
import { href, useRoute, type Route } from "./routes";
import { useSample } from "./samples";
import { clearSession, CREDENTIAL_REFUSED, keptCredential, loadSession, type Session } from "./session";

const NAV: { route: Route; label: string }[] = [
  { route: { name: "swap" }, label: "Material swap" },
  { route: { name: "room" }, label: "Room" },
  { route: { name: "texture" }, label: "Texture" },
  { route: { name: "jobs" }, label: "Jobs" },
];

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [refused, setRefused] = useState(false);
  const route = useRoute();
  const sample = useSample();

  // A credential revoked or expired mid-session: forget it (a reload would keep failing with it)
  // and ask for another, on the same route.
  useEffect(() => {
    const onRefused = (event: Event) => {
      // Only the credential the tab keeps: not the sign-in form's own check of a new one, nor a
      // late answer to a call made with one signed out of since (a long upload's).
      if ((event as CustomEvent<string>).detail !== keptCredential()) return;
      clearSession();
      setSession(null);
      setRefused(true);
    };
    window.addEventListener(CREDENTIAL_REFUSED, onRefused);
    return () => window.removeEventListener(CREDENTIAL_REFUSED, onRefused);
  }, []);

  if (!session) {
    return (
      <SignIn
        notice={refused ? "The server no longer accepts the credential this tab used (revoked or expired): sign in again." : ""}
        onSignedIn={(s) => {
          setRefused(false);
          setSession(s);
        }}
      />
    );
  }
  const signOut = () => {
    clearSession();
    setSession(null);
  };
  const { client } = session;
  const current = route.name === "job" ? "jobs" : route.name;

  return (
    <>
      <header className="topbar">
        <a className="brand" href={href({ name: "swap" })}>
          <span className="brand-mark" aria-hidden="true" />
          Render console
        </a>
        <nav aria-label="Sections">
          {NAV.map((item) => (
            <a key={item.route.name} href={href(item.route)} aria-current={item.route.name === current ? "page" : undefined}>
              {item.label}
            </a>
          ))}
        </nav>
        <button type="button" className="btn btn-ghost sign-out" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main className="page">
        {route.name === "swap" && <SwapForm client={client} sample={sample} />}
        {route.name === "room" && <RoomForm client={client} />}
        {route.name === "texture" && <TextureForm client={client} sample={sample} />}
        {route.name === "jobs" && <JobList client={client} />}
        {route.name === "job" && <JobView key={route.id} client={client} jobId={route.id} />}
      </main>
    </>
  );
}
