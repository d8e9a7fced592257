// Bench: the tables and plots of `ferroserve bench variants` and `bench load` runs, read from the folder the
// server is configured with (`[ui] bench_results`).

import { describe, getJson, request } from "../api";
import { h, show, table } from "../dom";

interface Run {
  name: string;
  kind: string;
  modified_unix: number;
  csv: string;
  plots: string[];
}

/** RFC 4180 rows: quoted fields may hold commas, quotes ("") and line breaks. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\n") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
    } else if (c !== "\r") cell += c;
  }
  if (cell || row.length) rows.push([...row, cell]);
  return rows;
}

/** A plot fetched with the API key (an <img src> could not send it). */
async function plot(run: string, file: string): Promise<HTMLElement> {
  try {
    const blob = await (await request(`bench/runs/${encodeURIComponent(run)}/${encodeURIComponent(file)}`)).blob();
    return h("figure", {}, h("img", { src: URL.createObjectURL(blob), alt: `${run}: ${file}` }), h("figcaption", {}, file));
  } catch (e) {
    return h("p", { class: "error" }, `${file}: ${describe(e)}`);
  }
}

async function section(run: Run): Promise<HTMLElement> {
  const [header, ...rows] = parseCsv(run.csv);
  const plots = await Promise.all(run.plots.map((p) => plot(run.name, p)));
  const date = new Date(run.modified_unix * 1000).toISOString().slice(0, 16).replace("T", " ");
  return h(
    "section",
    { class: "run" },
    h("h3", {}, run.name, " ", h("small", {}, `${run.kind} · ${date} UTC`)),
    table(header ?? [], rows),
    h("div", { class: "plots" }, plots),
  );
}

export async function render(root: HTMLElement): Promise<() => void> {
  const body = h("div");
  show(root, h("h2", {}, "Bench"), body);
  try {
    const { folder, runs } = await getJson<{ folder: string | null; runs: Run[] }>("bench/runs");
    if (!folder) {
      show(body, h("p", { class: "empty" }, "No results folder is configured: set bench_results in the [ui] table (or --bench-results) to the folder `ferroserve bench --out` writes into."));
    } else if (!runs.length) {
      show(body, h("p", { class: "empty" }, `No runs in ${folder} yet: run ferroserve bench variants --out ${folder}/<name>.`));
    } else {
      show(body, h("p", { class: "stats", title: folder }, `${runs.length} runs, newest first`), await Promise.all(runs.map(section)));
    }
  } catch (e) {
    show(body, h("p", { class: "error", role: "alert" }, describe(e)));
  }
  return () => {};
}
