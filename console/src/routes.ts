/** Hash routes (#/new, #/jobs, #/jobs/<id>, ...): they survive a reload and need nothing of the server. */

import { useEffect, useState } from "react";

export type Route =
  | { name: "swap" }
  | { name: "room" }
  | { name: "texture" }
  | { name: "jobs" }
  | { name: "job"; id: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "");
  const job = /^\/jobs\/([^/?#]+)$/.exec(path);
  if (job?.[1]) {
    // A link with a malformed escape (#/jobs/%) threw here, on every render, and blanked the page.
    try {
      return { name: "job", id: decodeURIComponent(job[1]) };
    } catch {
      return { name: "jobs" };
    }
  }
  switch (path) {
    case "/jobs":
      return { name: "jobs" };
    case "/room":
      return { name: "room" };
    case "/texture":
      return { name: "texture" };
    default:
      return { name: "swap" };
  }
}

export function href(route: Route): string {
  return route.name === "job" ? `#/jobs/${encodeURIComponent(route.id)}` : `#/${route.name === "swap" ? "" : route.name}`;
}

export function go(route: Route): void {
  window.location.hash = href(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
