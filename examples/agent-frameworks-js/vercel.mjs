// The Vercel AI SDK (ai + @ai-sdk/openai) against agentbus, unchanged,
// over Chat Completions: generateText and streamText with a client tool
// that the SDK executes itself (multi-step, stopWhen), a follow-up turn on
// the response's messages, generateObject and generateText's
// Output.object (structured output, json_schema).
//
//   BASE_URL=http://127.0.0.1:8080/v1 API_KEY=ab-... MODEL=gpt-4o-mini node vercel.mjs
//
// Prints one JSON object: per run the prompt, the tool's executions (the
// arguments the model gave) and the final text; per structured call the
// prompt and the parsed object. Exits non-zero on any error.
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, Output, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const baseURL = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
if (!baseURL || !apiKey) {
  console.error("set BASE_URL (e.g. http://127.0.0.1:8080/v1) and API_KEY");
  process.exit(2);
}
const openai = createOpenAI({ baseURL, apiKey });
const model = openai.chat(process.env.MODEL || "gpt-4o-mini");

function weatherTool(calls) {
  return tool({
    description: "Current weather for a city",
    inputSchema: z.object({ city: z.string().describe("the city") }),
    execute: async ({ city }) => {
      calls.push({ city });
      return `sunny in ${city}`;
    },
  });
}

const runs = {};
let followUp;

{
  const calls = [];
  const prompt = "vercel client tool, please";
  const tools = { get_weather: weatherTool(calls) };
  const r = await generateText({ model, maxRetries: 0, tools, stopWhen: stepCountIs(3), prompt });
  runs.generateText = { prompt, calls, answer: r.text, steps: r.steps.length, finish: r.finishReason };
  // The conversation goes on, as a chat app keeps it: the first question,
  // the response's messages (the tool call, its result, the answer) and the
  // next question.
  const next = "vercel follow-up question";
  const messages = [{ role: "user", content: prompt }, ...r.response.messages, { role: "user", content: next }];
  const r2 = await generateText({ model, maxRetries: 0, tools, stopWhen: stepCountIs(3), messages });
  followUp = { prompt: next, answer: r2.text };
}

{
  const calls = [];
  const errors = [];
  const prompt = "vercel client tool, streamed";
  const r = streamText({
    model,
    maxRetries: 0,
    tools: { get_weather: weatherTool(calls) },
    stopWhen: stepCountIs(3),
    prompt,
    // streamText reports errors here rather than throwing.
    onError: ({ error }) => errors.push(error),
  });
  let streamed = "";
  for await (const part of r.textStream) streamed += part;
  if (errors.length > 0) throw errors[0];
  runs.streamText = { prompt, calls, answer: await r.text, streamed, steps: (await r.steps).length, finish: await r.finishReason };
}

const weather = z.object({ city: z.string(), temperature: z.number(), sunny: z.boolean() });
const structured = {};
{
  const prompt = "vercel generateObject, the weather as data";
  const r = await generateObject({ model, maxRetries: 0, schema: weather, schemaName: "weather", prompt });
  structured.generateObject = { prompt, object: r.object };
}
{
  const prompt = "vercel Output.object, the weather as data";
  const r = await generateText({ model, maxRetries: 0, output: Output.object({ schema: weather, name: "weather" }), prompt });
  structured.outputObject = { prompt, object: r.output };
}

console.log(JSON.stringify({ runs, follow_up: followUp, structured }));
