// The OpenAI Agents SDK (@openai/agents) against agentbus, unchanged, on
// Chat Completions: an Agent with a function tool run by the SDK's runner,
// plain and streamed, a follow-up run on the first run's history, a
// handoff to another agent, and an Agent with an outputType (json_schema).
//
//   BASE_URL=http://127.0.0.1:8080/v1 API_KEY=ab-... MODEL=gpt-4o-mini node agents.mjs
//
// Prints one JSON object: per run the prompt, the tool's executions (the
// arguments the model gave) and the final output; per structured run the
// prompt and the parsed object. Exits non-zero on any error.
import { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool, user } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";

const baseURL = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
if (!baseURL || !apiKey) {
  console.error("set BASE_URL (e.g. http://127.0.0.1:8080/v1) and API_KEY");
  process.exit(2);
}
setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey, maxRetries: 0 }));
setOpenAIAPI("chat_completions");
setTracingDisabled(true);
const model = process.env.MODEL || "gpt-4o-mini";

function weatherAgent(calls) {
  const getWeather = tool({
    name: "get_weather",
    description: "Current weather for a city",
    parameters: z.object({ city: z.string().describe("the city") }),
    execute: async ({ city }) => {
      calls.push({ city });
      return `sunny in ${city}`;
    },
  });
  return new Agent({ name: "Weather", instructions: "You answer weather questions.", model, tools: [getWeather] });
}

const runs = {};
let followUp;
{
  const calls = [];
  const prompt = "agents client tool, please";
  const agent = weatherAgent(calls);
  const r = await run(agent, prompt, { maxTurns: 3 });
  runs.run = { prompt, calls, answer: r.finalOutput };
  // The conversation goes on: the SDK resends the whole history (the tool
  // call, its result, the answer) with the new question.
  const next = "agents follow-up question";
  const r2 = await run(agent, [...r.history, user(next)], { maxTurns: 3 });
  followUp = { prompt: next, answer: r2.finalOutput };
}
{
  const calls = [];
  const prompt = "agents client tool, streamed";
  const r = await run(weatherAgent(calls), prompt, { stream: true, maxTurns: 3 });
  let streamed = "";
  for await (const text of r.toTextStream()) streamed += text;
  await r.completed;
  if (r.error) throw r.error;
  runs.stream = { prompt, calls, answer: r.finalOutput, streamed };
}

// A handoff is a tool call too: the triage agent transfers to the billing
// agent, which answers.
let handoff;
{
  const prompt = "agents handoff to billing";
  const billing = new Agent({ name: "Billing", instructions: "You handle billing.", model });
  const triage = new Agent({ name: "Triage", instructions: "You route questions.", model, handoffs: [billing] });
  const r = await run(triage, prompt, { maxTurns: 3 });
  handoff = { prompt, answer: r.finalOutput, last_agent: r.lastAgent?.name };
}

const structured = {};
{
  const prompt = "agents outputType, the weather as data";
  const agent = new Agent({
    name: "Reporter",
    instructions: "Report the weather as data.",
    model,
    outputType: z.object({ city: z.string(), temperature: z.number(), sunny: z.boolean() }),
  });
  const r = await run(agent, prompt, { maxTurns: 1 });
  structured.outputType = { prompt, object: r.finalOutput };
}

console.log(JSON.stringify({ runs, follow_up: followUp, handoff, structured }));
