// What agent code sends, through the official openai npm package: JSON mode,
// structured output (json_schema), image parts, client-side tools run by
// the SDK's own tool loop (runTools, plain and streaming), models.list and
// models.retrieve, and the 404 of an unknown model.
//
//   BASE_URL=http://127.0.0.1:8080/v1 API_KEY=ab-... MODEL=gpt-4o-mini node compat.mjs
//
// Prints one JSON object with what the SDK got. Exits non-zero on any
// failure it does not expect.
import OpenAI from "openai";

const baseURL = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
if (!baseURL || !apiKey) {
  console.error("set BASE_URL (e.g. http://127.0.0.1:8080/v1) and API_KEY");
  process.exit(2);
}
const model = process.env.MODEL || "agentbus-offline";
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });

await client.chat.completions.create({
  model,
  response_format: { type: "json_object" },
  messages: [
    { role: "system", content: "Answer in JSON." },
    { role: "user", content: "node json mode" },
  ],
});

await client.chat.completions.create({
  model,
  response_format: {
    type: "json_schema",
    json_schema: {
      name: "person",
      strict: true,
      schema: {
        type: "object",
        properties: { name: { type: "string" }, age: { type: "integer" } },
        required: ["name", "age"],
        additionalProperties: false,
      },
    },
  },
  messages: [{ role: "user", content: "node structured" }],
});

const image = await client.chat.completions.create({
  model,
  messages: [
    {
      role: "user",
      content: [
        { type: "text", text: "node picture" },
        { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
      ],
    },
  ],
});

const stream = await client.chat.completions.create({
  model,
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "node stream" }],
});
let streamContent = "";
for await (const chunk of stream) {
  streamContent += chunk.choices[0]?.delta?.content ?? "";
}

// Client-side tools: the SDK declares get_weather, runs the model's calls
// itself and sends the whole conversation back (no X-Conversation-Id), as
// agent frameworks do. The streaming runner accumulates tool_calls deltas.
const weatherCalls = [];
const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
    parse: JSON.parse,
    function: async ({ city }) => {
      weatherCalls.push(city);
      return `sunny in ${city}`;
    },
  },
};
const toolRun = client.chat.completions.runTools({
  model,
  messages: [{ role: "user", content: "node client tool, please" }],
  tools: [weatherTool],
});
const toolAnswer = await toolRun.finalContent();
const toolStream = client.chat.completions.runTools({
  model,
  stream: true,
  messages: [{ role: "user", content: "node client tool, streamed" }],
  tools: [weatherTool],
});
const toolStreamAnswer = await toolStream.finalContent();

const models = [];
for await (const m of client.models.list()) models.push(m.id);
const retrieved = await client.models.retrieve(model);

let unknown = {};
try {
  await client.chat.completions.create({ model: "gpt-nope", messages: [{ role: "user", content: "hi" }] });
  unknown = { status: 0 };
} catch (err) {
  if (!(err instanceof OpenAI.APIError)) throw err;
  unknown = { status: err.status, code: err.code };
}

console.log(
  JSON.stringify({
    models,
    retrieved: retrieved.id,
    image_answer: image.choices[0]?.message?.content ?? "",
    stream_content: streamContent,
    tool_answer: toolAnswer,
    tool_stream_answer: toolStreamAnswer,
    weather_calls: weatherCalls,
    unknown_status: unknown.status,
    unknown_code: unknown.code,
  }),
);
