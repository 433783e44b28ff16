/** Errors from the API, put where a person looks: a field's problem next to its control. */

import { Code, ConnectError, fieldViolations } from "@render-pipeline/client";

/** One problem: the request field it names ("" for none) and what is wrong, safe to show. */
export interface Problem {
  field: string;
  text: string;
}

/** Problems by the form control they belong to ("" for the form as a whole). */
export type FieldErrors = Record<string, Problem[]>;

/** Whether any control has a problem (a control's list is emptied when its input changes). */
export function hasProblems(errors: FieldErrors): boolean {
  return Object.values(errors).some((problems) => problems.length > 0);
}

/** A request field path's control: the longest matching prefix wins. */
export type ControlMap = ReadonlyArray<readonly [prefix: string, control: string]>;

function matches(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
}

/** The control a field path (such as "material_swap.hints.quad[2]") belongs to, or "". */
export function controlOf(path: string, map: ControlMap): string {
  let best = "";
  let length = -1;
  for (const [prefix, control] of map) {
    if (matches(path, prefix) && prefix.length > length) {
      best = control;
      length = prefix.length;
    }
  }
  return best;
}

/** Where the paths of a material swap's BadRequest go in the swap form. */
export const SWAP_CONTROLS: ControlMap = [
  ["material_swap.photo", "photo"],
  ["material_swap.mask", "photo"],
  ["material_swap.swatch", "swatches"],
  ["material_swap.variant_swatches", "swatches"],
  ["material_swap.surface", "surface"],
  ["material_swap.hints", "hints"],
  ["material_swap.hints.quad_size", "scale"],
  ["material_swap.hints.plane_distance_meters", "scale"],
  ["material_swap.hints.focal_length_px", "scale"],
  ["material_swap.options.real_world_scale", "scale"],
  ["material_swap.options.rotation_degrees", "rotation"],
  ["material_swap.options.layout", "layout"],
  ["material_swap.options.row_offset", "layout"],
  ["output", "output"],
];

export const ROOM_CONTROLS: ControlMap = [
  ["room_render.room.room_type", "roomType"],
  ["room_render.room.name", "roomType"],
  ["room_render.room.area_square_meters", "area"],
  ["room_render.materials", "materials"],
  ["room_render.options.style_preset", "style"],
  ["room_render.options.additional_prompt", "additions"],
  ["room_render.options", "options"],
  ["room_render.custom_prompt", "additions"],
];

export const TEXTURE_CONTROLS: ControlMap = [
  ["texture_edit.base_texture", "texture"],
  ["texture_edit.mask", "mask"],
  ["texture_edit.prompt", "prompt"],
  ["texture_edit.options", "options"],
];

/** A sentence for any error, safe to show (the server's messages are). */
export function describe(error: unknown): string {
  const e = ConnectError.from(error);
  switch (e.code) {
    case Code.Unauthenticated:
      return "The credential was not accepted: sign in again.";
    case Code.PermissionDenied:
      return `This credential may not do that: ${e.rawMessage}`;
    case Code.Unavailable:
      return `The service is unavailable right now; try again shortly. (${e.rawMessage})`;
    case Code.ResourceExhausted:
      return `Too many requests or jobs for now: ${e.rawMessage}`;
    default:
      return e.rawMessage || e.message;
  }
}

/** An error's field problems sorted onto controls; those that name no control go under "". */
export function fieldErrors(error: unknown, map: ControlMap): FieldErrors {
  const out: FieldErrors = {};
  const violations = fieldViolations(error);
  if (violations.length === 0) {
    out[""] = [{ field: "", text: describe(error) }];
    return out;
  }
  for (const { field, description } of violations) {
    (out[controlOf(field, map)] ??= []).push({ field, text: description });
  }
  return out;
}
