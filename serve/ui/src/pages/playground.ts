// Playground: chat with a generation model, streamed, with its sampling parameters; each answer shows the
// cache status (x-cache: HIT, SEMANTIC, MISS), time to first token and tokens/s. Embeddings: texts in, their
// cosine similarity matrix out.

import { describe, events, request } from "../api";
import { badge, field, formatNumber, h, select, show, table } from "../dom";
import { modelsFor } from "./models";

interface Message {
  role: string;
  content: string;
}

function number(id: string, value: string, attributes: Record<string, string> = {}): HTMLInputElement {
  return h("input", { id, type: "number", value, ...attributes });
}

async function chat(root: HTMLElement, signal: { abort?: AbortController }): Promise<void> {
  const models = await modelsFor("generation");
  if (!models.length) {
    show(root, h("p", { class: "empty" }, "No generation model is ready."));
    return;
  }
  const model = select("chat-model", models);
  const system = h("textarea", { id: "chat-system", rows: 2, placeholder: "You are a helpful assistant." });
  const temperature = number("chat-temperature", "0.7", { min: "0", max: "2", step: "0.1" });
  const topP = number("chat-top-p", "1", { min: "0", max: "1", step: "0.05" });
  const maxTokens = number("chat-max-tokens", "128", { min: "1", step: "1" });
  const seed = number("chat-seed", "", { min: "0", step: "1", placeholder: "random" });
  const prompt = h("textarea", { id: "chat-input", rows: 3, placeholder: "Ask something (Enter sends, Shift+Enter: new line)", required: true });
  const log = h("div", { class: "chat-log", "aria-live": "polite" });
  const send = h("button", { type: "submit" }, "Send");
  const stop = h("button", { type: "button", disabled: true, onclick: () => signal.abort?.abort() }, "Stop");
  const clear = h("button", { type: "button", onclick: () => { history.length = 0; log.replaceChildren(); } }, "Clear");
  const history: Message[] = [];

  const ask = async (event: Event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    history.push({ role: "user", content: text });
    log.append(h("div", { class: "message user" }, h("b", {}, "You"), h("p", {}, text)));
    const answer = h("p", { class: "answer" });
    const stats = h("div", { class: "stats" }, "waiting…");
    log.append(h("div", { class: "message assistant" }, h("b", {}, model.value), answer, stats));
    const messages = system.value.trim() ? [{ role: "system", content: system.value.trim() }, ...history] : [...history];
    const body: Record<string, unknown> = {
      model: model.value,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      temperature: Number(temperature.value),
      top_p: Number(topP.value),
      max_tokens: Number(maxTokens.value),
    };
    if (seed.value !== "") body.seed = Number(seed.value);
    signal.abort = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let first = 0;
    let pieces = 0;
    let completion = 0;
    try {
      const response = await request("v1/chat/completions", { json: body, signal: signal.abort.signal });
      const cache = response.headers.get("x-cache") ?? "MISS";
      for await (const e of events(response)) {
        if (e.data === "[DONE]") break;
        const chunk = JSON.parse(e.data);
        if (chunk.error) throw new Error(chunk.error.message ?? JSON.stringify(chunk.error));
        const delta: string = chunk.choices?.[0]?.delta?.content ?? "";
        if (delta) {
          if (!first) first = performance.now();
          pieces += 1;
          answer.textContent += delta;
          log.scrollTop = log.scrollHeight;
        }
        if (chunk.usage) completion = chunk.usage.completion_tokens;
      }
      const ended = performance.now();
      const tokens = completion || pieces;
      const ttft = first ? first - started : ended - started;
      const rate = first && ended > first ? (tokens - 1) / ((ended - first) / 1000) : NaN;
      show(
        stats,
        badge(cache, cache.toLowerCase()),
        ` time to first token ${formatNumber(ttft, 0)} ms · ${tokens} tokens · ${formatNumber(rate)} tokens/s`,
      );
      stats.dataset.ttft = String(ttft);
      history.push({ role: "assistant", content: answer.textContent ?? "" });
    } catch (e) {
      history.pop();
      show(stats, h("span", { class: "error", role: "alert" }, describe(e)));
    } finally {
      send.disabled = false;
      stop.disabled = true;
    }
  };
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  const form = h(
    "form",
    { class: "chat", onsubmit: ask },
    h(
      "div",
      { class: "params" },
      field("Model", model),
      field("Temperature", temperature),
      field("Top p", topP),
      field("Max tokens", maxTokens),
      field("Seed", seed, "same seed, same answer (cached)"),
    ),
    field("System prompt", system),
    log,
    field("Message", prompt),
    h("div", { class: "buttons" }, send, stop, clear),
  );
  show(root, form);
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb || 1);
}

async function embeddings(root: HTMLElement): Promise<void> {
  const models = await modelsFor("embedding");
  if (!models.length) {
    show(root, h("p", { class: "empty" }, "No embedding model is ready."));
    return;
  }
  const model = select("embed-model", models);
  const texts = h("textarea", { id: "embed-texts", rows: 5, required: true }, "A terminal multiplexer\nscreen lets you detach a shell session\nAn image editor for raster graphics");
  const result = h("div", { class: "result" });
  const compare = async (event: Event) => {
    event.preventDefault();
    const input = texts.value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (!input.length) return;
    show(result, "embedding…");
    try {
      const response = await request("v1/embeddings", { json: { model: model.value, input } });
      const body = await response.json();
      const vectors: number[][] = body.data.map((d: { embedding: number[] }) => d.embedding);
      const short = (t: string) => (t.length > 32 ? `${t.slice(0, 30)}…` : t);
      const rows = input.map((t, i) => [
        h("th", { scope: "row" }, short(t)),
        ...vectors.map((_, j) => {
          const s = cosine(vectors[i], vectors[j]);
          return h("span", { class: "cell", style: `--s:${Math.max(0, s).toFixed(3)}`, title: `${s.toFixed(4)}` }, s.toFixed(3));
        }),
      ]);
      show(
        result,
        h("p", { class: "stats" }, badge(response.headers.get("x-cache") ?? "MISS"), ` ${vectors[0].length} dimensions · ${body.usage?.prompt_tokens ?? "?"} tokens`),
        table(["", ...input.map(short)], rows, "Cosine similarity"),
      );
    } catch (e) {
      show(result, h("p", { class: "error", role: "alert" }, describe(e)));
    }
  };
  show(
    root,
    h("form", { onsubmit: compare }, field("Model", model), field("Texts, one per line", texts), h("button", { type: "submit" }, "Compare")),
    result,
  );
}

export async function render(root: HTMLElement): Promise<() => void> {
  const signal: { abort?: AbortController } = {};
  const chatPane = h("section", { class: "pane", "aria-label": "Chat" });
  const embedPane = h("section", { class: "pane", "aria-label": "Embeddings" });
  show(root, h("h2", {}, "Playground"), h("div", { class: "columns" }, h("div", {}, h("h3", {}, "Chat"), chatPane), h("div", {}, h("h3", {}, "Embeddings"), embedPane)));
  await Promise.all([chat(chatPane, signal), embeddings(embedPane)]);
  return () => signal.abort?.abort();
}
