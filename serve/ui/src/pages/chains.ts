// Chains: a form generated from the chain's input schema (and the configurable fields of its config
// schema), the answer streamed as it is generated, then each step's output and timing.

import { describe, events, getJson, request } from "../api";
import { field, formatNumber, h, select, show, table } from "../dom";

interface Schema {
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  default?: unknown;
  enum?: unknown[];
}

interface Step {
  name: string;
  type: string;
  seconds: number;
  prompt_tokens: number;
  completion_tokens: number;
  output: unknown;
}

type Read = () => unknown;

/** One control per property; `read` gives the value typed (undefined when an optional field is empty). */
function control(id: string, name: string, schema: Schema, required: boolean): [HTMLElement, Read] {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  const label = `${schema.title ?? name}${required ? " *" : ""}`;
  if (schema.enum) {
    const s = select(id, ["", ...schema.enum.map(String)]);
    return [field(label, s, schema.description), () => (s.value === "" ? undefined : schema.enum?.find((e) => String(e) === s.value))];
  }
  if (type === "boolean") {
    const box = h("input", { id, type: "checkbox", checked: schema.default === true });
    return [field(label, box, schema.description), () => box.checked];
  }
  if (type === "number" || type === "integer") {
    const input = h("input", { id, type: "number", step: type === "integer" ? "1" : "any", required, value: schema.default === undefined ? undefined : String(schema.default) });
    return [field(label, input, schema.description), () => (input.value === "" ? undefined : Number(input.value))];
  }
  if (type === "string" || type === undefined) {
    const input = h("textarea", { id, rows: 2, required }, typeof schema.default === "string" ? schema.default : "");
    return [field(label, input, schema.description), () => (input.value === "" && !required ? undefined : input.value)];
  }
  const input = h("textarea", { id, rows: 3, required, placeholder: `${type} as JSON` }, schema.default === undefined ? "" : JSON.stringify(schema.default));
  const read = () => {
    if (!input.value.trim()) return undefined;
    try {
      return JSON.parse(input.value);
    } catch (e) {
      throw new Error(`${name} is not JSON: ${(e as Error).message}`);
    }
  };
  return [field(label, input, schema.description), read];
}

function form(prefix: string, schema: Schema): [HTMLElement[], () => Record<string, unknown>] {
  const entries = Object.entries(schema.properties ?? {}).map(([name, s]) => {
    const [element, read] = control(`${prefix}-${name}`, name, s, schema.required?.includes(name) ?? false);
    return { name, element, read };
  });
  const read = () => {
    const value: Record<string, unknown> = {};
    for (const e of entries) {
      const v = e.read();
      if (v !== undefined) value[e.name] = v;
    }
    return value;
  };
  return [entries.map((e) => e.element), read];
}

function stepsTable(steps: Step[]): HTMLElement {
  const rows = steps.map((s) => [
    h("strong", {}, s.name),
    s.type,
    `${formatNumber(s.seconds * 1000, 1)} ms`,
    s.prompt_tokens || s.completion_tokens ? `${s.prompt_tokens} in, ${s.completion_tokens} out` : "",
    h("details", {}, h("summary", {}, "output"), h("pre", {}, JSON.stringify(s.output, null, 2))),
  ]);
  return table(["Step", "Type", "Time", "Tokens", "Output"], rows, "Steps");
}

async function open(pane: HTMLElement, name: string, description: string): Promise<() => void> {
  const path = `chains/${encodeURIComponent(name)}`;
  const [input, config] = await Promise.all([getJson<Schema>(`${path}/input_schema`), getJson<Schema>(`${path}/config_schema`)]);
  const [inputFields, readInput] = form("input", input);
  const configurable = config.properties?.configurable ?? {};
  const [configFields, readConfig] = form("config", configurable);
  const answer = h("div", { class: "answer", id: "chain-answer", "aria-live": "polite" });
  const output = h("div", { class: "result", id: "chain-output" });
  const run = h("button", { type: "submit" }, "Run");
  let abort: AbortController | undefined;
  const submit = async (event: Event) => {
    event.preventDefault();
    abort = new AbortController();
    run.disabled = true;
    answer.textContent = "";
    show(output, "running…");
    const started = performance.now();
    try {
      const body = { input: readInput(), config: { configurable: readConfig() } };
      const response = await request(`${path}/stream`, { json: body, signal: abort.signal });
      let first = 0;
      for await (const e of events(response)) {
        if (e.event === "error") {
          const error = JSON.parse(e.data);
          throw new Error(`${error.status_code}: ${error.message}`);
        }
        if (e.event === "end") break;
        const data = e.data ? JSON.parse(e.data) : null;
        if (e.event === "metadata" && data?.steps) {
          show(output, h("p", { class: "stats" }, `${((performance.now() - started) / 1000).toFixed(2)} s in all, first text after ${first ? (first - started).toFixed(0) : "–"} ms`), stepsTable(data.steps));
          continue;
        }
        if (e.event !== "data" || data === null) continue;
        // Text arrives as AIMessageChunks, at the top or under the output key that holds the answer.
        const chunks = data.type === "AIMessageChunk" ? [data] : Object.values(data).filter((v: any) => v?.type === "AIMessageChunk");
        for (const chunk of chunks as { content: string }[]) {
          if (chunk.content && !first) first = performance.now();
          answer.textContent += chunk.content;
        }
        if (!chunks.length) answer.append(h("pre", {}, JSON.stringify(data, null, 2)));
      }
    } catch (e) {
      show(output, h("p", { class: "error", role: "alert" }, describe(e)));
    } finally {
      run.disabled = false;
    }
  };
  show(
    pane,
    description ? h("p", {}, description) : null,
    h(
      "form",
      { onsubmit: submit },
      h("fieldset", {}, h("legend", {}, "Input"), inputFields),
      configFields.length ? h("fieldset", {}, h("legend", {}, "Configurable"), h("div", { class: "params" }, configFields)) : null,
      run,
      h("button", { type: "button", onclick: () => abort?.abort() }, "Stop"),
    ),
    h("h3", {}, "Answer"),
    answer,
    output,
  );
  return () => abort?.abort();
}

export async function render(root: HTMLElement): Promise<() => void> {
  const pane = h("div");
  const list = h("div");
  show(root, h("h2", {}, "Chains"), list, pane);
  let stop = () => {};
  try {
    const chains = (await getJson<{ chains: { name: string; description: string | null; steps: number }[] }>("chains")).chains;
    if (!chains.length) {
      show(list, h("p", { class: "empty" }, "No chains: add a TOML file to the chains folder or PUT /chains/{name}."));
      return stop;
    }
    const picker = select("chain", chains.map((c) => c.name));
    const choose = async () => {
      stop();
      const chain = chains.find((c) => c.name === picker.value);
      try {
        stop = await open(pane, picker.value, chain?.description ?? "");
      } catch (e) {
        show(pane, h("p", { class: "error", role: "alert" }, describe(e)));
      }
    };
    picker.addEventListener("change", choose);
    show(list, field("Chain", picker));
    await choose();
  } catch (e) {
    show(list, h("p", { class: "error", role: "alert" }, describe(e)));
  }
  return () => stop();
}
