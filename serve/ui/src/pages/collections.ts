// Collections: the list with sizes, a collection's points page by page with their payloads, and search by
// text (embedded by the collection's model) or by vector, with a Qdrant filter and a score threshold.

import { describe, getJson } from "../api";
import { field, formatBytes, h, select, show, table } from "../dom";

interface Envelope<T> {
  result: T;
}

interface Point {
  id: number | string;
  score?: number;
  payload?: Record<string, unknown>;
}

interface Info {
  points_count: number;
  embedding_model: string | null;
  memory_bytes: number;
  config: { params: { vectors: { size: number; distance: string } }; quantization_config: unknown };
}

const base = (name: string) => `collections/${encodeURIComponent(name)}`;

function payloadCell(payload: Record<string, unknown> | undefined): HTMLElement {
  const text = payload?.text ?? payload?.page_content;
  const rest = { ...payload };
  delete rest.text;
  delete rest.page_content;
  return h("div", {}, typeof text === "string" ? h("p", {}, text) : null, Object.keys(rest).length ? h("code", { class: "json" }, JSON.stringify(rest)) : null);
}

function pointsTable(points: Point[], scores: boolean): HTMLElement {
  if (!points.length) return h("p", { class: "empty" }, "No points.");
  const rows = points.map((p) => [String(p.id), ...(scores ? [p.score?.toFixed(4) ?? ""] : []), payloadCell(p.payload)]);
  return table(["Id", ...(scores ? ["Score"] : []), "Payload"], rows);
}

/** A JSON field's value, or a thrown message naming the field. */
function json(name: string, text: string): unknown {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${name} is not JSON: ${(e as Error).message}`);
  }
}

async function open(pane: HTMLElement, name: string): Promise<void> {
  show(pane, "loading…");
  const info = (await getJson<Envelope<Info>>(base(name))).result;
  const vectors = info.config.params.vectors;

  const browse = h("div", { class: "result" });
  let next: unknown = null;
  const page = async (offset: unknown) => {
    try {
      const body = { limit: 10, with_payload: true, ...(offset === null ? {} : { offset }) };
      const answer = (await getJson<Envelope<{ points: Point[]; next_page_offset: unknown }>>(`${base(name)}/points/scroll`, { json: body })).result;
      next = answer.next_page_offset;
      show(browse, pointsTable(answer.points, false), next === null ? null : h("button", { type: "button", onclick: () => page(next) }, "Next page"));
    } catch (e) {
      show(browse, h("p", { class: "error", role: "alert" }, describe(e)));
    }
  };

  const by = select("search-by", info.embedding_model ? ["text", "vector"] : ["vector"]);
  const query = h("textarea", { id: "search-query", rows: 2, required: true, placeholder: info.embedding_model ? "a text, embedded by the collection's model" : `[${vectors.size} numbers]` });
  const filter = h("textarea", { id: "search-filter", rows: 2, placeholder: '{"must": [{"key": "section", "match": {"value": "editors"}}]}' });
  const limit = h("input", { id: "search-limit", type: "number", min: "1", max: "100", value: "5" });
  const threshold = h("input", { id: "search-threshold", type: "number", step: "0.01", placeholder: "none" });
  const results = h("div", { class: "result", id: "search-results" });
  const search = async (event: Event) => {
    event.preventDefault();
    try {
      const body: Record<string, unknown> = {
        query: by.value === "text" ? { text: query.value, model: info.embedding_model } : json("Vector", query.value),
        limit: Number(limit.value),
        with_payload: true,
        filter: json("Filter", filter.value),
      };
      if (threshold.value !== "") body.score_threshold = Number(threshold.value);
      show(results, "searching…");
      const started = performance.now();
      const answer = (await getJson<Envelope<{ points: Point[] }>>(`${base(name)}/points/query`, { json: body })).result;
      show(results, h("p", { class: "stats" }, `${answer.points.length} results in ${(performance.now() - started).toFixed(0)} ms`), pointsTable(answer.points, true));
    } catch (e) {
      show(results, h("p", { class: "error", role: "alert" }, describe(e)));
    }
  };
  show(
    pane,
    h(
      "p",
      { class: "stats" },
      `${info.points_count} points · ${vectors.size} dimensions · ${vectors.distance} · ${formatBytes(info.memory_bytes)}`,
      info.embedding_model ? ` · texts embedded by ${info.embedding_model}` : "",
      info.config.quantization_config ? " · int8 quantized" : "",
    ),
    h("h3", {}, "Search"),
    h(
      "form",
      { onsubmit: search },
      h("div", { class: "params" }, field("By", by), field("Limit", limit), field("Score threshold", threshold)),
      field("Query", query),
      field("Filter (Qdrant JSON, optional)", filter),
      h("button", { type: "submit" }, "Search"),
    ),
    results,
    h("h3", {}, "Points"),
    browse,
  );
  await page(null);
}

export async function render(root: HTMLElement): Promise<() => void> {
  const pane = h("div");
  const list = h("div", { class: "result" });
  show(root, h("h2", {}, "Collections"), list, pane);
  try {
    const names = (await getJson<Envelope<{ collections: { name: string }[] }>>("collections")).result.collections.map((c) => c.name);
    if (!names.length) {
      show(list, h("p", { class: "empty" }, "No collections yet: create one with the Qdrant API (README)."));
      return () => {};
    }
    const picker = select("collection", names);
    const choose = () => open(pane, picker.value).catch((e) => show(pane, h("p", { class: "error", role: "alert" }, describe(e))));
    picker.addEventListener("change", choose);
    show(list, field("Collection", picker));
    await choose();
  } catch (e) {
    show(list, h("p", { class: "error", role: "alert" }, describe(e)));
  }
  return () => {};
}
