/** The bundled sample (public/samples, written by `make console` from devstack's sample room). */

import { useEffect, useState } from "react";

export interface Sample {
  photo: string;
  mask: string;
  swatches: { name: string; url: string }[];
  swatchSizeMeters: { width: number; height: number };
  quad: [number, number][];
  focalLengthPx: number;
  planeDistanceMeters: number;
  surface: string;
}

interface Manifest {
  photo: string;
  mask: string;
  swatches: Record<string, string>;
  swatch_size_meters: { width: number; height: number };
  quad: [number, number][];
  focal_length_px: number;
  plane_distance_meters: number;
  surface: string;
}

const BASE = "/samples/";

async function loadSample(): Promise<Sample | null> {
  const response = await fetch(`${BASE}sample.json`, { cache: "no-cache" });
  if (!response.ok) {
    return null;
  }
  const m = (await response.json()) as Manifest;
  return {
    photo: BASE + m.photo,
    mask: BASE + m.mask,
    swatches: Object.entries(m.swatches).map(([name, file]) => ({ name, url: BASE + file })),
    swatchSizeMeters: m.swatch_size_meters,
    quad: m.quad,
    focalLengthPx: m.focal_length_px,
    planeDistanceMeters: m.plane_distance_meters,
    surface: m.surface,
  };
}

let cached: Promise<Sample | null> | undefined;

/** The sample's manifest, or null when the build has none. */
export function useSample(): Sample | null {
  const [sample, setSample] = useState<Sample | null>(null);
  useEffect(() => {
    let live = true;
    cached ??= loadSample().catch(() => null);
    void cached.then((s) => live && setSample(s));
    return () => {
      live = false;
    };
  }, []);
  return sample;
}
