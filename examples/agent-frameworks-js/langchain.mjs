// LangChain JS (@langchain/openai's ChatOpenAI) against agentbus,
// unchanged: bindTools with a tool round run by the caller (the model's
// call executed, its ToolMessage sent back), the same with .stream(), and
// withStructuredOutput (json_schema).
//
//   BASE_URL=http://127.0.0.1:8080/v1 API_KEY=ab-... MODEL=gpt-4o-mini node langchain.mjs
//
// Prints one JSON object: per run the prompt, the tool's executions (the
// arguments the model gave) and the final text; per structured call the
// prompt and the parsed object. Exits non-zero on any error.
import { HumanMessage, SystemMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";

const baseURL = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
if (!baseURL || !apiKey) {
  console.error("set BASE_URL (e.g. http://127.0.0.1:8080/v1) and API_KEY");
  process.exit(2);
}
const llm = new ChatOpenAI({ model: process.env.MODEL || "gpt-4o-mini", apiKey, configuration: { baseURL }, maxRetries: 0 });

function weatherTool(calls) {
  return tool(
    async ({ city }) => {
      calls.push({ city });
      return `sunny in ${city}`;
    },
    { name: "get_weather", description: "Current weather for a city", schema: z.object({ city: z.string().describe("the city") }) },
  );
}

// One agent loop as LangChain code writes it: ask, run each tool call,
// send the ToolMessages back, until the model answers without calls.
async function loop(prompt, ask) {
  const calls = [];
  const weather = weatherTool(calls);
  const model = llm.bindTools([weather]);
  const messages = [new SystemMessage("You answer weather questions."), new HumanMessage(prompt)];
  for (let round = 0; round < 3; round++) {
    const ai = await ask(model, messages);
    messages.push(ai);
    if (!ai.tool_calls?.length) return { prompt, calls, answer: ai.content, rounds: round + 1 };
    for (const call of ai.tool_calls) messages.push(await weather.invoke(call)); // a ToolMessage
  }
  throw new Error("no answer after 3 rounds");
}

const runs = {};
runs.invoke = await loop("langchain client tool, please", (model, messages) => model.invoke(messages));
runs.stream = await loop("langchain client tool, streamed", async (model, messages) => {
  let acc;
  for await (const chunk of await model.stream(messages)) acc = acc ? acc.concat(chunk) : chunk;
  return acc;
});

const structured = {};
{
  const prompt = "langchain withStructuredOutput, the weather as data";
  const weather = z.object({ city: z.string(), temperature: z.number(), sunny: z.boolean() });
  const object = await llm.withStructuredOutput(weather, { name: "weather" }).invoke(prompt);
  structured.withStructuredOutput = { prompt, object };
}

console.log(JSON.stringify({ runs, structured }));
