// The console's shell: navigation between the pages (by the URL's #hash), the API key (asked once, kept in
// this browser), and the page in view (each page returns a function that stops its timers and streams).

import { NEEDS_KEY, apiKey, describe, setApiKey } from "./api";
import { h, show } from "./dom";
import * as bench from "./pages/bench";
import * as chains from "./pages/chains";
import * as collections from "./pages/collections";
import * as dashboard from "./pages/dashboard";
import * as models from "./pages/models";
import * as playground from "./pages/playground";

type Page = { render(root: HTMLElement): Promise<() => void> };

const PAGES: [string, string, Page][] = [
  ["models", "Models", models],
  ["playground", "Playground", playground],
  ["collections", "Collections", collections],
  ["chains", "Chains", chains],
  ["dashboard", "Dashboard", dashboard],
  ["bench", "Bench", bench],
];

const app = document.getElementById("app") as HTMLElement;
const nav = h("nav", { "aria-label": "Pages" });
const main = h("main", { id: "page", tabindex: "-1" });
const keyStatus = h("span", { id: "key-status" });
const keyInput = h("input", { id: "api-key", type: "password", autocomplete: "off", placeholder: "API key" });
const keyMessage = h("p", { class: "error", role: "alert" });
const keyForm = h(
  "form",
  { class: "key", hidden: true, onsubmit: (e: Event) => { e.preventDefault(); setApiKey(keyInput.value.trim()); keyForm.hidden = true; renderKey(); void route(); } },
  h("label", { for: "api-key" }, "API key"),
  keyInput,
  h("button", { type: "submit" }, "Save"),
  h("button", { type: "button", onclick: () => { setApiKey(""); keyInput.value = ""; renderKey(); } }, "Forget"),
  keyMessage,
);

function renderKey(): void {
  keyStatus.textContent = apiKey() ? "key set" : "no key";
}

let stop: () => void = () => {};
let generation = 0;

async function route(): Promise<void> {
  const name = location.hash.replace(/^#\/?/, "") || "models";
  const entry = PAGES.find(([id]) => id === name) ?? PAGES[0];
  for (const link of nav.querySelectorAll("a")) {
    link.setAttribute("aria-current", link.dataset.page === entry[0] ? "page" : "false");
  }
  stop();
  stop = () => {};
  const mine = ++generation;
  document.title = `${entry[1]} · ferroserve`;
  const root = h("div", { class: "page", "data-page": entry[0] });
  show(main, root);
  let cleanup = () => {};
  try {
    cleanup = await entry[2].render(root);
  } catch (e) {
    show(root, h("p", { class: "error", role: "alert" }, describe(e)));
  }
  if (mine === generation) stop = cleanup;
  else cleanup(); // the user moved on while it loaded
}

window.addEventListener(NEEDS_KEY, (e) => {
  keyForm.hidden = false;
  keyMessage.textContent = `The server wants an API key: ${(e as CustomEvent<string>).detail}`;
  keyInput.focus();
});
window.addEventListener("hashchange", () => void route());

show(nav, PAGES.map(([id, title]) => h("a", { href: `#/${id}`, "data-page": id }, title)));
show(
  app,
  h(
    "header",
    {},
    h("h1", {}, h("a", { href: "#/models" }, "ferroserve")),
    nav,
    h("div", { class: "key-box" }, keyStatus, h("button", { type: "button", onclick: () => { keyForm.hidden = !keyForm.hidden; keyInput.focus(); } }, "API key")),
  ),
  keyForm,
  main,
);
renderKey();
void route();
