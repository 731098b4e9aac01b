// The official openai npm package against agentbus, unchanged: only the base
// URL and an agentbus API key differ from talking to OpenAI.
//
//   BASE_URL=http://127.0.0.1:8080/v1 API_KEY=ab-... node check.mjs
//
// Prints one JSON object: a non-streaming completion, a streamed one, and
// the error the SDK raises for a bad key. Exits non-zero on any other
// failure.
import OpenAI from "openai";
import { VERSION } from "openai/version";

const baseURL = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
if (!baseURL || !apiKey) {
  console.error("set BASE_URL (e.g. http://127.0.0.1:8080/v1) and API_KEY");
  process.exit(2);
}
const model = process.env.MODEL || "agentbus-offline";

// agentbus retries provider calls itself: the SDK must not retry on top.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });

const res = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Hello from Node" }],
});
const completion = {
  id: res.id,
  content: res.choices[0]?.message?.content ?? "",
  finish_reason: res.choices[0]?.finish_reason ?? "",
  usage: res.usage,
};

const stream = await client.chat.completions.create({
  model,
  stream: true,
  messages: [{ role: "user", content: "tell me a story about lighthouses" }],
});
let chunks = 0;
let content = "";
let finish = "";
let streamID = "";
for await (const chunk of stream) {
  chunks++;
  streamID = chunk.id;
  const c = chunk.choices[0];
  if (c?.delta?.content) content += c.delta.content;
  if (c?.finish_reason) finish = c.finish_reason;
}

let badKey = {};
try {
  const bad = new OpenAI({ baseURL, apiKey: "ab-not-a-key", maxRetries: 0 });
  await bad.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
  badKey = { status: 0, error: "a bad key was accepted" };
} catch (err) {
  if (!(err instanceof OpenAI.APIError)) throw err;
  badKey = { status: err.status, code: err.code, type: err.type, message: err.message };
}

console.log(
  JSON.stringify({
    sdk_version: VERSION,
    completion,
    stream: { id: streamID, chunks, content, finish_reason: finish },
    bad_key: badKey,
  }),
);
