/** The console's small design system: buttons, fields, errors, badges, progress. */

import type { ButtonHTMLAttributes, ReactNode } from "react";

import { JobState } from "@render-pipeline/client";
import type { Problem } from "../errors";

type Variant = "primary" | "secondary" | "ghost" | "danger";

export function Button({
  variant = "secondary",
  loading = false,
  children,
  className = "",
  disabled,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant; loading?: boolean }) {
  return (
    <button
      type="button"
      className={`btn btn-${variant} ${className}`}
      disabled={disabled || loading}
      aria-busy={loading || undefined}
      {...rest}
    >
      {loading && <span className="spinner" aria-hidden="true" />}
      {children}
    </button>
  );
}

/** The problems the server found with one control, shown right under it. */
export function FieldError({ control, problems }: { control: string; problems: Problem[] | undefined }) {
  if (!problems?.length) {
    return null;
  }
  return (
    <div className="field-error" role="alert" data-error-for={control}>
      {problems.map((p, i) => (
        <p key={i}>
          {p.field && <code>{p.field.replace(/^(material_swap|room_render|texture_edit)\./, "")}</code>} {p.text}
        </p>
      ))}
    </div>
  );
}

export function Field({
  label,
  hint,
  control,
  problems,
  children,
  htmlFor,
}: {
  label: string;
  hint?: ReactNode;
  control?: string;
  problems?: Problem[] | undefined;
  children: ReactNode;
  htmlFor?: string;
}) {
  return (
    <div className={`field${problems?.length ? " field-invalid" : ""}`} data-control={control}>
      <label className="field-label" htmlFor={htmlFor}>
        {label}
      </label>
      {children}
      {hint && <p className="field-hint">{hint}</p>}
      {control !== undefined && <FieldError control={control} problems={problems} />}
    </div>
  );
}

export function Alert({ kind = "error", children }: { kind?: "error" | "info" | "warning"; children: ReactNode }) {
  return (
    <div className={`alert alert-${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}

const STATE_NAMES: Record<JobState, string> = {
  [JobState.UNSPECIFIED]: "unknown",
  [JobState.QUEUED]: "queued",
  [JobState.RUNNING]: "running",
  [JobState.SUCCEEDED]: "succeeded",
  [JobState.FAILED]: "failed",
  [JobState.CANCELLED]: "cancelled",
};

export function stateName(state: JobState): string {
  return STATE_NAMES[state] ?? "unknown";
}

export function StateBadge({ state }: { state: JobState }) {
  const name = stateName(state);
  return (
    <span className={`badge badge-${name}`} data-state={name}>
      {name}
    </span>
  );
}

export function ProgressBar({ value, label }: { value: number; label: string }) {
  const percent = Math.round(Math.max(0, Math.min(1, value)) * 100);
  return (
    <div className="progress" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent}>
      <div className="progress-fill" style={{ width: `${percent}%` }} />
    </div>
  );
}

export function Segmented<T extends string>({
  value,
  options,
  onChange,
  label,
}: {
  value: T;
  options: { value: T; label: string; title?: string }[];
  onChange: (value: T) => void;
  label: string;
}) {
  return (
    <div className="segmented" role="radiogroup" aria-label={label}>
      {options.map((o) => (
        <button
          key={o.value}
          type="button"
          role="radio"
          aria-checked={o.value === value}
          className={o.value === value ? "active" : ""}
          title={o.title}
          onClick={() => onChange(o.value)}
        >
          {o.label}
        </button>
      ))}
    </div>
  );
}

export function formatBytes(n: number | bigint): string {
  const value = Number(n);
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(0)} KB`;
  return `${(value / 1024 / 1024).toFixed(1)} MB`;
}
