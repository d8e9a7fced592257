// Reading the server's own /metrics (Prometheus text format): sums over label sets, per-label totals, and
// quantiles of histograms from their cumulative buckets, the way Prometheus' histogram_quantile does.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? "").matchAll(LABEL)) {
      labels[name] = value.replace(/\\"/g, '"').replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
    }
    const value = match[3] === "+Inf" ? Infinity : Number(match[3]);
    if (!Number.isNaN(value)) samples.push({ name: match[1], labels, value });
  }
  return samples;
}

export type Filter = Record<string, string>;

function matches(sample: Sample, filter: Filter): boolean {
  return Object.entries(filter).every(([k, v]) => sample.labels[k] === v);
}

/** One scrape, indexed by metric name. */
export class Scrape {
  private readonly byName = new Map<string, Sample[]>();

  constructor(
    samples: Sample[],
    readonly at: number,
  ) {
    for (const s of samples) {
      const list = this.byName.get(s.name);
      if (list) list.push(s);
      else this.byName.set(s.name, [s]);
    }
  }

  samples(name: string, filter: Filter = {}): Sample[] {
    return (this.byName.get(name) ?? []).filter((s) => matches(s, filter));
  }

  sum(name: string, filter: Filter = {}): number {
    return this.samples(name, filter).reduce((total, s) => total + s.value, 0);
  }

  /** Totals per value of `label` (label sets that lack it are left out). */
  by(name: string, label: string, filter: Filter = {}): Map<string, number> {
    const totals = new Map<string, number>();
    for (const s of this.samples(name, filter)) {
      const key = s.labels[label];
      if (key !== undefined) totals.set(key, (totals.get(key) ?? 0) + s.value);
    }
    return totals;
  }

  /** A histogram's cumulative buckets summed over its label sets: [upper bound, count], ascending. */
  buckets(name: string, filter: Filter = {}): [number, number][] {
    const counts = new Map<number, number>();
    for (const s of this.samples(`${name}_bucket`, filter)) {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      counts.set(le, (counts.get(le) ?? 0) + s.value);
    }
    return [...counts.entries()].sort((a, b) => a[0] - b[0]);
  }
}

/** Per-second rate of a counter between two scrapes (0 when it went backwards: a restart). */
export function rate(now: number, before: number, seconds: number): number {
  return seconds > 0 && now >= before ? (now - before) / seconds : 0;
}

/** The buckets' counts gained between two scrapes. */
export function bucketDelta(now: [number, number][], before: [number, number][]): [number, number][] {
  const old = new Map(before);
  return now.map(([le, count]) => [le, Math.max(0, count - (old.get(le) ?? 0))]);
}

/** The q-quantile of cumulative buckets, interpolated linearly within the bucket it falls in; NaN if empty. */
export function quantile(q: number, buckets: [number, number][]): number {
  if (!buckets.length) return NaN;
  const total = buckets[buckets.length - 1][1];
  if (total <= 0) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower; // beyond the last finite bound: its bound is the best answer
      return lower + ((le - lower) * (rank - below)) / Math.max(count - below, 1e-12);
    }
    lower = le;
    below = count;
  }
  return lower;
}
