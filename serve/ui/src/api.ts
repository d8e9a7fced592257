// Calls to the server's own APIs with the API key (kept in this browser's localStorage), errors turned
// into messages that say what the server said, and a reader of server-sent events.

const KEY = "ferroserve.apiKey";

export function apiKey(): string {
  return localStorage.getItem(KEY) ?? "";
}

export function setApiKey(key: string): void {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

/** An answer that was not 2xx, with the message of its body (each API puts it somewhere else). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Fired on 401, so the shell can ask for a key. */
export const NEEDS_KEY = "ferroserve:needs-key";

function messageOf(status: number, text: string): string {
  try {
    const body = JSON.parse(text);
    const message =
      body?.error?.message ?? // OpenAI
      (typeof body?.error === "string" ? body.error : undefined) ?? // KServe, TEI
      body?.detail ?? // LangServe
      body?.status?.error; // Qdrant
    if (typeof message === "string" && message) return message;
  } catch {
    // not JSON: the text itself
  }
  return text.trim() || `HTTP ${status}`;
}

export interface RequestOptions {
  method?: string;
  json?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** The raw response of a 2xx answer; throws ApiError otherwise. */
export async function request(path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  if (options.json !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method: options.method ?? (options.json === undefined ? "GET" : "POST"),
    headers,
    body: options.json === undefined ? undefined : JSON.stringify(options.json),
    signal: options.signal,
  });
  if (!response.ok) {
    const error = new ApiError(response.status, messageOf(response.status, await response.text()));
    if (response.status === 401) window.dispatchEvent(new CustomEvent(NEEDS_KEY, { detail: error.message }));
    throw error;
  }
  return response;
}

export async function getJson<T>(path: string, options: RequestOptions = {}): Promise<T> {
  return (await request(path, options)).json() as Promise<T>;
}

export interface ServerEvent {
  event: string;
  data: string;
}

/** The events of a `text/event-stream` body, as they arrive. */
export async function* events(response: Response): AsyncGenerator<ServerEvent> {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
      else if (event !== "message") yield { event, data: "" };
    }
  }
}

/** A message box for a failure: what the server said, with its status. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) return `${error.status}: ${error.message}`;
  if (error instanceof DOMException && error.name === "AbortError") return "stopped";
  return error instanceof Error ? error.message : String(error);
}
