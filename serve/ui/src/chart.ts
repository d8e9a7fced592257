// Small SVG charts for the dashboard: lines over the last minutes, and bars of a histogram.

const SVG = "http://www.w3.org/2000/svg";
export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>) {
  const element = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  return element;
}

function label(x: number, y: number, text: string, anchor = "start"): SVGTextElement {
  const t = svg("text", { x, y, "text-anchor": anchor, class: "axis" });
  t.textContent = text;
  return t;
}

export interface Series {
  name: string;
  points: number[];
}

function compact(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  if (value >= 100 || value === 0) return value.toFixed(0);
  return value.toPrecision(2);
}

/** Lines of equally spaced points (one per poll), newest on the right, with a legend below. */
export function lineChart(series: Series[], slots: number, unit = ""): HTMLElement {
  const width = 480;
  const height = 150;
  const left = 44;
  const bottom = 6;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const finite = series.flatMap((s) => s.points.filter(Number.isFinite));
  const top = Math.max(...finite, 0) * 1.1 || 1;
  const x = (i: number, n: number) => left + ((width - left - 4) * (slots - n + i)) / Math.max(slots - 1, 1);
  const y = (v: number) => height - bottom - ((height - bottom - 6) * v) / top;
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    chart.append(svg("line", { x1: left, x2: width, y1: y(value), y2: y(value), class: "grid" }));
    chart.append(label(left - 4, y(value) + 4, compact(value) + unit, "end"));
  }
  series.forEach((s, index) => {
    const path = s.points
      .map((v, i) => (Number.isFinite(v) ? `${x(i, s.points.length).toFixed(1)},${y(v).toFixed(1)}` : ""))
      .filter(Boolean)
      .join(" ");
    const color = COLORS[index % COLORS.length];
    if (path) chart.append(svg("polyline", { points: path, fill: "none", stroke: color, "stroke-width": 2 }));
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("span");
    item.style.setProperty("--color", COLORS[index % COLORS.length]);
    item.textContent = s.name;
    legend.append(item);
  });
  const figure = document.createElement("div");
  figure.append(chart, legend);
  return figure;
}

/** Bars of counts per bucket label. */
export function barChart(labels: string[], counts: number[]): SVGSVGElement {
  const width = 480;
  const height = 160;
  const bottom = 18;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const top = Math.max(...counts, 1);
  const slot = width / Math.max(labels.length, 1);
  labels.forEach((text, i) => {
    const h = ((height - bottom - 14) * counts[i]) / top;
    chart.append(svg("rect", { x: i * slot + 4, y: height - bottom - h, width: slot - 8, height: h, fill: COLORS[0] }));
    chart.append(label(i * slot + slot / 2, height - 4, text, "middle"));
    if (counts[i] > 0) chart.append(label(i * slot + slot / 2, height - bottom - h - 3, compact(counts[i]), "middle"));
  });
  return chart;
}
