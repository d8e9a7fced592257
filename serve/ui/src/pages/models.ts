// Models: each model's state, backend, weight format, lanes and devices, why it failed to load, and loading
// or unloading it through the repository API (admin keys).

import { describe, getJson, request } from "../api";
import { badge, formatBytes, h, show, table } from "../dom";

export interface Lane {
  device: string;
  backend: string;
  threads: number;
  max_batch_size: number | null;
}

export interface Model {
  name: string;
  task: string;
  backend: string;
  state: string;
  error: string | null;
  dtype: string;
  bytes: number | null;
  dimensions: number | null;
  max_input_tokens: number | null;
  lanes: Lane[];
}

export async function listModels(): Promise<Model[]> {
  return (await getJson<{ models: Model[] }>("models")).models;
}

/** Names of the ready models of one task. */
export async function modelsFor(task: string): Promise<string[]> {
  return (await listModels()).filter((m) => m.task === task && m.state === "ready").map((m) => m.name);
}

function lanes(model: Model): string {
  return model.lanes
    .map((l) => `${l.device} · ${l.backend} · ${l.threads ? `${l.threads} threads` : l.device === "cpu" ? "shared pool" : "gpu"}`)
    .join("\n");
}

export async function render(root: HTMLElement): Promise<() => void> {
  const status = h("p", { class: "status", role: "status" });
  const body = h("div");
  const refresh = async () => {
    try {
      const models = await listModels();
      const rows = models.map((m) => [
        h("strong", {}, m.name),
        m.task,
        badge(m.state),
        m.backend,
        m.dtype,
        formatBytes(m.bytes),
        h("span", { class: "pre" }, lanes(m)),
        m.dimensions ? `${m.dimensions} dims, ${m.max_input_tokens} tokens` : m.max_input_tokens ? `${m.max_input_tokens} tokens` : "–",
        h(
          "span",
          { class: "actions" },
          h("button", { type: "button", onclick: () => act(m.name, "load") }, m.state === "ready" ? "Reload" : "Load"),
          m.state === "ready" ? h("button", { type: "button", onclick: () => act(m.name, "unload") }, "Unload") : null,
        ),
      ]);
      const failures = models.filter((m) => m.error);
      show(
        body,
        table(["Model", "Task", "State", "Backend", "Weights", "Size", "Lanes", "Inputs", ""], rows),
        failures.length
          ? h("section", {}, h("h3", {}, "Load errors"), failures.map((m) => h("p", { class: "error" }, h("strong", {}, m.name), ": ", m.error)))
          : null,
      );
    } catch (e) {
      show(body, h("p", { class: "error", role: "alert" }, describe(e)));
    }
  };
  const act = async (name: string, action: "load" | "unload") => {
    status.textContent = `${action === "load" ? "Loading" : "Unloading"} ${name}…`;
    try {
      await request(`v2/repository/models/${encodeURIComponent(name)}/${action}`, { method: "POST" });
      status.textContent = `${name}: ${action === "load" ? "loaded" : "unloaded"}`;
    } catch (e) {
      status.textContent = "";
      status.append(h("span", { class: "error", role: "alert" }, `${name}: ${describe(e)}`));
    }
    await refresh();
  };
  show(root, h("h2", {}, "Models"), h("button", { type: "button", onclick: refresh }, "Refresh"), status, body);
  await refresh();
  const timer = window.setInterval(refresh, 5000);
  return () => window.clearInterval(timer);
}
