/** The idempotency key a form's submit carries. */

import { useRef } from "react";

import { SubmitRenderRequestSchema, toJson, type SubmitRenderRequest } from "@render-pipeline/client";

/** A new idempotency key (crypto.randomUUID needs a secure context; this does not). */
export function newKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The key of a form's render requests. A request sent again as it was (the user pressing the button
 * again after an error: a reply lost to a dropped connection says nothing of whether the job was
 * made) carries its first attempt's key, so the gateway answers with the job that attempt made
 * instead of making, and charging, a second. A changed request gets a new key, and so does the
 * same request once an earlier one was answered with its job (the user asks for another render).
 */
export function useRequestKey(): { keyFor: (request: SubmitRenderRequest) => string; answered: () => void } {
  const last = useRef<{ body: string; key: string } | null>(null);
  return {
    keyFor(request) {
      // (The request without its key: keyFor gives it.)
      const body = JSON.stringify(toJson(SubmitRenderRequestSchema, request));
      if (last.current?.body !== body) {
        last.current = { body, key: newKey() };
      }
      return last.current.key;
    },
    answered() {
      last.current = null;
    },
  };
}
