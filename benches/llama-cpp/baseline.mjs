// llama.cpp (through node-llama-cpp's prebuilt CPU binaries) on a GGUF file: prefill of one prompt, then
// greedy decode of 1 and N streams in one context (batched decoding), the way benches/llm.sh measures
// ferroserve. Prints one JSON object.
//
//   node baseline.mjs --model F.gguf --prompt-file P.txt --threads 2 --tokens 64 --streams 1,4,16
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    "prompt-file": { type: "string" },
    threads: { type: "string", default: "2" },
    tokens: { type: "string", default: "64" },
    streams: { type: "string", default: "1,4,16" },
    repeats: { type: "string", default: "3" },
  },
});
const threads = Number(args.threads);
const tokens = Number(args.tokens);
const streams = args.streams.split(",").map(Number);
const repeats = Number(args.repeats);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: args.model, gpuLayers: 0 });
const prompt = model.tokenize(readFileSync(args["prompt-file"], "utf8"));
// A fresh context per measurement, with room for `sequences` streams.
const newContext = (sequences) =>
  model.createContext({
    contextSize: Math.max(2048, (prompt.length + tokens + 8) * sequences),
    sequences,
    threads,
    batchSize: 512,
    flashAttention: false,
  });

// Greedy decode of `count` tokens after `start` on one sequence; resolves to the generated token count.
async function decode(sequence, start, count) {
  let generated = 0;
  for await (const _ of sequence.evaluate(start, { temperature: 0 })) {
    if (++generated >= count) break;
  }
  return generated;
}

const best = (xs) => Math.max(...xs);
const result = {
  cpu_variant: llama.buildType + " " + (llama.systemInfo || "").trim(),
  threads,
  prompt_tokens: prompt.length,
  prefill_tok_s: 0,
  decode: {},
};

// Prefill: the whole prompt evaluated without generating (llama.cpp's ubatch of 512); best of `repeats`.
const prefill = [];
for (let i = 0; i < repeats; i++) {
  const context = await newContext(1);
  const started = performance.now();
  await context.getSequence().evaluateWithoutGeneratingNewTokens(prompt);
  prefill.push(prompt.length / ((performance.now() - started) / 1000));
  await context.dispose();
}
result.prefill_tok_s = best(prefill);

// Decode: `n` streams, each a short distinct prompt, `tokens` tokens each; aggregate tok/s over the decode.
for (const n of streams) {
  const runs = [];
  for (let i = 0; i < repeats; i++) {
    const context = await newContext(n);
    const seqs = Array.from({ length: n }, () => context.getSequence());
    const starts = seqs.map((_, j) => model.tokenize(`Package ${j}: a tool that`));
    await Promise.all(seqs.map((s, j) => s.evaluateWithoutGeneratingNewTokens(starts[j])));
    const started = performance.now();
    const counts = await Promise.all(seqs.map((s) => decode(s, [model.tokenize(" is")[0]], tokens)));
    const seconds = (performance.now() - started) / 1000;
    runs.push(counts.reduce((a, b) => a + b, 0) / seconds);
    await context.dispose();
  }
  result.decode[n] = best(runs);
}
console.log(JSON.stringify(result));
await model.dispose();
await llama.dispose();
