// Unit tests of the console's parsers, run by `npm test` (make ui) with Node: Prometheus text, histogram
// quantiles, counter rates, CSV and server-sent events split across reads.

import { events } from "./api";
import { parseCsv } from "./pages/bench";
import { Scrape, bucketDelta, parse, quantile, rate } from "./prometheus";

const cases: [string, () => void | Promise<void>][] = [];
const test = (name: string, run: () => void | Promise<void>) => cases.push([name, run]);

function equal(actual: unknown, expected: unknown, what: string): void {
  const [a, e] = [JSON.stringify(actual), JSON.stringify(expected)];
  if (a !== e) throw new Error(`${what}: got ${a}, expected ${e}`);
}

function near(actual: number, expected: number, what: string): void {
  if (Math.abs(actual - expected) > 1e-9) throw new Error(`${what}: got ${actual}, expected ${expected}`);
}

const METRICS = `# HELP ferroserve_http_requests_total HTTP requests
# TYPE ferroserve_http_requests_total counter
ferroserve_http_requests_total{route="/v1/embeddings",model="m",status="200"} 7
ferroserve_http_requests_total{route="/health",model="",status="200"} 3
ferroserve_lane{model="a \\"quoted\\" name",lane="cpu-0"} 1.5e3
lat_bucket{route="a",le="0.1"} 2
lat_bucket{route="a",le="1"} 4
lat_bucket{route="a",le="+Inf"} 4
lat_bucket{route="b",le="0.1"} 0
lat_bucket{route="b",le="1"} 4
lat_bucket{route="b",le="+Inf"} 6
`;

test("parses samples, labels with escapes, exponents", () => {
  const samples = parse(METRICS);
  equal(samples.length, 9, "samples");
  equal(samples[2].labels.model, 'a "quoted" name', "escaped quote");
  equal(samples[2].value, 1500, "exponent");
});

test("sums, filters and groups by label", () => {
  const s = new Scrape(parse(METRICS), 0);
  equal(s.sum("ferroserve_http_requests_total"), 10, "sum");
  equal(s.sum("ferroserve_http_requests_total", { route: "/health" }), 3, "filtered");
  equal([...s.by("ferroserve_http_requests_total", "route").keys()], ["/v1/embeddings", "/health"], "by route");
  equal(s.sum("missing"), 0, "absent metric");
});

test("merges buckets over label sets and interpolates quantiles", () => {
  const buckets = new Scrape(parse(METRICS), 0).buckets("lat");
  equal(buckets, [[0.1, 2], [1, 8], [Infinity, 10]], "merged");
  near(quantile(0.2, buckets), 0.1, "at a bound");
  near(quantile(0.5, buckets), 0.1 + 0.9 * (3 / 6), "inside a bucket");
  near(quantile(0.99, buckets), 1, "in +Inf: the last finite bound");
  equal(quantile(0.5, []), NaN, "empty");
  equal(quantile(0.5, [[1, 0], [Infinity, 0]]), NaN, "no observations");
});

test("rates and bucket deltas between scrapes", () => {
  near(rate(30, 10, 2), 10, "per second");
  equal(rate(5, 10, 1), 0, "a restart is no negative rate");
  equal(rate(5, 1, 0), 0, "no time passed");
  equal(bucketDelta([[1, 5], [Infinity, 9]], [[1, 2], [Infinity, 3]]), [[1, 3], [Infinity, 6]], "delta");
});

test("CSV with quotes, commas and line breaks", () => {
  equal(parseCsv('a,b\n1,"x, ""y"""\n2,"two\nlines"\n'), [["a", "b"], ["1", 'x, "y"'], ["2", "two\nlines"]], "rows");
  equal(parseCsv("a,b\r\n1,2"), [["a", "b"], ["1", "2"]], "CRLF, no final newline");
});

test("server-sent events split anywhere across reads", async () => {
  const text = 'event: metadata\ndata: {"run_id":"1"}\n\ndata: {"a":\ndata: 1}\n\nevent: end\n\n';
  const pieces = [text.slice(0, 7), text.slice(7, 30), text.slice(30, 31), text.slice(31)];
  const body = new ReadableStream({
    start(controller) {
      for (const p of pieces) controller.enqueue(new TextEncoder().encode(p));
      controller.close();
    },
  });
  const seen = [];
  for await (const e of events(new Response(body))) seen.push(e);
  equal(seen, [{ event: "metadata", data: '{"run_id":"1"}' }, { event: "message", data: '{"a":\n1}' }, { event: "end", data: "" }], "events");
});

let failed = 0;
for (const [name, run] of cases) {
  try {
    await run();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${name}: ${(e as Error).message}`);
  }
}
if (failed) throw new Error(`${failed} of ${cases.length} console tests failed`);
