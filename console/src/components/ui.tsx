/** The console's small design system: buttons, fields, errors, badges, progress. */

import {
  Children,
  cloneElement,
  isValidElement,
  useEffect,
  useId,
  useRef,
  type ButtonHTMLAttributes,
  type KeyboardEvent,
  type ReactElement,
  type ReactNode,
  type RefObject,
} from "react";

import { JobState } from "@render-pipeline/client";
import { hasProblems, type FieldErrors, type Problem } from "../errors";

type Variant = "primary" | "secondary" | "ghost" | "danger";

export function Button({
  variant = "secondary",
  loading = false,
  children,
  className = "",
  disabled,
  onClick,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant; loading?: boolean }) {
  // While loading the button refuses clicks (and the form submission a click or Enter would make)
  // but stays enabled: a disabled button loses the keyboard focus to the page's body.
  return (
    <button
      type="button"
      className={`btn btn-${variant} ${className}`}
      disabled={disabled}
      aria-disabled={loading || undefined}
      aria-busy={loading || undefined}
      onClick={(event) => {
        if (loading) {
          event.preventDefault();
          return;
        }
        onClick?.(event);
      }}
      {...rest}
    >
      {loading && <span className="spinner" aria-hidden="true" />}
      {children}
    </button>
  );
}

/** The id of a control's error message, for the control's aria-describedby. */
export function errorId(control: string): string {
  return `${control}-error`;
}

/** The problems the server found with one control, shown right under it. */
export function FieldError({ control, problems }: { control: string; problems: Problem[] | undefined }) {
  if (!problems?.length) {
    return null;
  }
  return (
    <div className="field-error" role="alert" id={errorId(control)} tabIndex={-1} data-error-for={control}>
      {problems.map((p, i) => (
        <p key={i}>
          {p.field && <code>{p.field.replace(/^(material_swap|room_render|texture_edit)\./, "")}</code>} {p.text}
        </p>
      ))}
    </div>
  );
}

interface TiedProps {
  id?: string;
  "aria-invalid"?: boolean;
  "aria-describedby"?: string;
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
  const labelId = useId();
  const hintId = useId();
  const invalid = !!problems?.length && !!control;
  const describedBy = [hint ? hintId : "", invalid ? errorId(control) : ""].filter(Boolean).join(" ") || undefined;
  // A labelled control is told its hint and its error; a field of several controls is a group named
  // by its label (so its buttons, such as two pickers' "Upload an image", say which they are for).
  const tie = (child: ReactNode) => {
    if (!htmlFor || !isValidElement<TiedProps>(child) || child.props.id !== htmlFor) return child;
    const own = child.props;
    return cloneElement(child as ReactElement<TiedProps>, {
      "aria-invalid": own["aria-invalid"] ?? (invalid || undefined),
      "aria-describedby": [own["aria-describedby"], describedBy].filter(Boolean).join(" ") || undefined,
    });
  };
  const group = htmlFor ? {} : { role: "group", "aria-labelledby": labelId, "aria-describedby": describedBy };
  return (
    <div className={`field${problems?.length ? " field-invalid" : ""}`} data-control={control} {...group}>
      {htmlFor ? (
        <label className="field-label" htmlFor={htmlFor} id={labelId}>
          {label}
        </label>
      ) : (
        <span className="field-label" id={labelId}>
          {label}
        </span>
      )}
      {Children.map(children, tie)}
      {hint && (
        <p className="field-hint" id={hintId}>
          {hint}
        </p>
      )}
      {control !== undefined && <FieldError control={control} problems={problems} />}
    </div>
  );
}

/** After a refused submit, the keyboard focus goes to the first control marked invalid, or the
 * first error shown (a group's, or the form's alert), whichever comes first on the page. Only then:
 * a control's errors cleared later (a photo picked, its upload ending while the user types
 * elsewhere) leave the focus where it is. */
export function useFocusOnProblems(form: RefObject<HTMLElement | null>, problems: FieldErrors): void {
  const had = useRef(false);
  useEffect(() => {
    const has = hasProblems(problems);
    if (has && !had.current) {
      form.current?.querySelector<HTMLElement>('[aria-invalid="true"], .field-error, .alert')?.focus();
    }
    had.current = has;
  }, [form, problems]);
}

export function Alert({
  kind = "error",
  id,
  children,
}: {
  kind?: "error" | "info" | "warning";
  id?: string;
  children: ReactNode;
}) {
  return (
    <div className={`alert alert-${kind}`} role={kind === "error" ? "alert" : "status"} id={id} tabIndex={-1}>
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
  const group = useRef<HTMLDivElement>(null);
  const tabbable = options.some((o) => o.value === value) ? value : options[0]?.value;
  // A radio group is one Tab stop (the checked radio); the arrow keys move the choice.
  const onKey = (event: KeyboardEvent) => {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const index = options.findIndex((o) => o.value === value);
    const next = (index + step + options.length) % options.length;
    onChange(options[next]!.value);
    group.current?.querySelectorAll<HTMLButtonElement>("[role=radio]")[next]?.focus();
  };
  return (
    <div className="segmented" role="radiogroup" aria-label={label} ref={group} onKeyDown={onKey}>
      {options.map((o) => (
        <button
          key={o.value}
          type="button"
          role="radio"
          aria-checked={o.value === value}
          tabIndex={o.value === tabbable ? 0 : -1}
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
