// Dashboard: the server's own /metrics polled every second and turned into rates, latency percentiles,
// queue depths, tokens/s, per-lane utilization, the batch-size histogram and cache hit rates. Nothing else
// (no Prometheus, no Grafana) is needed.

import { describe, request } from "../api";
import { barChart, lineChart, type Series } from "../chart";
import { formatNumber, h, show, table } from "../dom";
import { Scrape, bucketDelta, parse, quantile, rate } from "../prometheus";

const SLOTS = 120;
const POLL_MS = 1000;

/** Named time series, each the last SLOTS values. */
class History {
  private readonly series = new Map<string, number[]>();

  push(name: string, value: number): void {
    const points = this.series.get(name) ?? [];
    points.push(value);
    if (points.length > SLOTS) points.shift();
    this.series.set(name, points);
  }

  get(names: string[]): Series[] {
    return names.map((name) => ({ name, points: this.series.get(name) ?? [] }));
  }

  matching(prefix: string): Series[] {
    return [...this.series.entries()].filter(([n]) => n.startsWith(prefix)).map(([name, points]) => ({ name: name.slice(prefix.length), points }));
  }
}

function tile(id: string, label: string, value: string): HTMLElement {
  return h("div", { class: "tile", id }, h("span", { class: "value" }, value), h("span", {}, label));
}

function panel(title: string, chart: Element): HTMLElement {
  return h("section", { class: "panel" }, h("h3", {}, title), chart);
}

const REQUESTS = ["ferroserve_http_requests_total", "ferroserve_grpc_requests_total"];

export async function render(root: HTMLElement): Promise<() => void> {
  const tiles = h("div", { class: "tiles" });
  const panels = h("div", { class: "panels" });
  const status = h("p", { class: "status", role: "status" });
  show(root, h("h2", {}, "Dashboard"), status, tiles, panels);
  const history = new History();
  let first: Scrape | undefined;
  let last: Scrape | undefined;

  const poll = async () => {
    let now: Scrape;
    try {
      const text = await (await request("metrics")).text();
      now = new Scrape(parse(text), performance.now());
    } catch (e) {
      status.textContent = `metrics: ${describe(e)}`;
      return;
    }
    status.textContent = "";
    first ??= now;
    const before = last ?? now;
    last = now;
    const seconds = (now.at - before.at) / 1000;
    const perSecond = (name: string, filter = {}) => rate(now.sum(name, filter), before.sum(name, filter), seconds);

    const http = perSecond(REQUESTS[0]);
    const grpc = perSecond(REQUESTS[1]);
    const errors = perSecond("ferroserve_http_errors_total");
    history.push("HTTP", http);
    history.push("gRPC", grpc);
    const latency = bucketDelta(now.buckets("ferroserve_http_request_duration_seconds"), before.buckets("ferroserve_http_request_duration_seconds"));
    const grpcLatency = bucketDelta(now.buckets("ferroserve_grpc_request_duration_seconds"), before.buckets("ferroserve_grpc_request_duration_seconds"));
    const merged = latency.map(([le, c], i) => [le, c + (grpcLatency[i]?.[1] ?? 0)] as [number, number]);
    const [p50, p90, p99] = [0.5, 0.9, 0.99].map((q) => quantile(q, merged) * 1000);
    history.push("p50", p50);
    history.push("p90", p90);
    history.push("p99", p99);
    const queued = now.sum("ferroserve_queue_depth") + now.sum("ferroserve_generation_waiting");
    history.push("waiting", queued);
    history.push("generating", now.sum("ferroserve_generation_running"));
    const generated = perSecond("ferroserve_generation_tokens_total");
    history.push("generated", generated);
    history.push("prompt", perSecond("ferroserve_generation_prompt_tokens_total"));
    history.push("embedded", perSecond("ferroserve_input_tokens_total"));
    const busy = now.samples("ferroserve_lane_busy_microseconds_total");
    for (const sample of busy) {
      const filter = { model: sample.labels.model, lane: sample.labels.lane };
      const used = rate(sample.value, before.sum("ferroserve_lane_busy_microseconds_total", filter), seconds) / 1e6;
      history.push(`lane:${sample.labels.model} ${sample.labels.lane}`, Math.min(100, used * 100));
    }

    const caches = ["embedding", "response", "semantic"].map((cache) => {
      const hits = now.sum("ferroserve_cache_hits_total", { cache });
      const misses = now.sum("ferroserve_cache_misses_total", { cache });
      return [cache, hits, misses, hits + misses ? (100 * hits) / (hits + misses) : NaN] as const;
    });
    const hits = caches.reduce((t, c) => t + c[1], 0);
    const lookups = caches.reduce((t, c) => t + c[1] + c[2], 0);

    show(
      tiles,
      tile("tile-rps", "requests/s", formatNumber(http + grpc)),
      tile("tile-errors", "errors/s", formatNumber(errors)),
      tile("tile-p99", "p99 latency, ms", formatNumber(p99)),
      tile("tile-queue", "waiting", formatNumber(queued, 0)),
      tile("tile-tokens", "generated tokens/s", formatNumber(generated)),
      tile("tile-hits", "cache hit rate", lookups ? `${formatNumber((100 * hits) / lookups)}%` : "–"),
      tile("tile-total", "requests served", formatNumber(now.sum(REQUESTS[0]) + now.sum(REQUESTS[1]), 0)),
    );
    const sizes = bucketDelta(now.buckets("ferroserve_batch_size"), first === now ? [] : first.buckets("ferroserve_batch_size"));
    const counts = sizes.map(([, c], i) => c - (i ? sizes[i - 1][1] : 0));
    show(
      panels,
      panel("Requests per second", lineChart(history.get(["HTTP", "gRPC"]), SLOTS)),
      panel("Latency (ms, each second's requests)", lineChart(history.get(["p50", "p90", "p99"]), SLOTS)),
      panel("Queue: waiting and generating", lineChart(history.get(["waiting", "generating"]), SLOTS)),
      panel("Tokens per second", lineChart(history.get(["generated", "prompt", "embedded"]), SLOTS)),
      panel("Lane utilization (%)", lineChart(history.matching("lane:"), SLOTS, "%")),
      panel(
        "Batch sizes since this page opened",
        barChart(sizes.map(([le]) => (le === Infinity ? "more" : `≤${le}`)), counts),
      ),
      h(
        "section",
        { class: "panel" },
        h("h3", {}, "Caches since start"),
        table(["Cache", "Hits", "Misses", "Hit rate"], caches.map(([name, hit, miss, ratio]) => [name, formatNumber(hit, 0), formatNumber(miss, 0), Number.isNaN(ratio) ? "–" : `${formatNumber(ratio)}%`])),
      ),
    );
  };
  await poll();
  const timer = window.setInterval(poll, POLL_MS);
  return () => window.clearInterval(timer);
}
