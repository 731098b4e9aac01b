// An agentbus remote tool in JavaScript: "word_count", served as an endpoint
// of the NATS micro service "agentbus-tools" (see internal/stage/toolexec/remote.go
// for the contract every language follows):
//
//   - service name "agentbus-tools"; one endpoint per tool, the endpoint
//     name is the tool name;
//   - the endpoint subject is where calls go: "agentbus.tool.<name>";
//   - endpoint metadata "description" (shown to the model) and "schema"
//     (the JSON Schema of the arguments, as a JSON string; the tool
//     firewall validates every call against it);
//   - request body = the arguments JSON, reply body = the result text;
//   - a failed call answers with a micro error (respondError), which the
//     toolexec stage reports to the model as "error: ...".
//
// The bus requires a credential: a tool identity may serve only its own
// tools' subjects (agentbus.tool.<name>) and answer calls, nothing else. The
// operator issues it and allows the tool to be offered to the model:
//
//   agentbus nats creds --role tool --name word_count --out word_count.creds
//   agentbus serve --remote-tools word_count ...
//   NATS_URL=nats://127.0.0.1:4222 NATS_CREDS=word_count.creds node tool.js
//
// agentbus discovers remote tools at start and again every 15 seconds.
//
// It prints one line, "ready <service id>", once the endpoint is served,
// and stops cleanly on SIGINT or SIGTERM. Run several copies to scale: the
// endpoint's queue group splits the calls between them.
import { connect, credsAuthenticator } from "nats";
import { readFileSync } from "node:fs";

const servers = process.env.NATS_URL || "nats://127.0.0.1:4222";

const schema = {
  type: "object",
  properties: {
    text: { type: "string", description: "The text to count.", maxLength: 65536 },
  },
  required: ["text"],
  additionalProperties: false,
};

// wordCount is the tool itself: words, lines and characters of a text.
export function wordCount(text) {
  const words = text.split(/\s+/u).filter((w) => w !== "").length;
  const lines = text === "" ? 0 : text.split(/\r\n|\r|\n/u).length;
  const characters = [...text].length;
  return { words, lines, characters };
}

// handle turns one request into a reply or a micro error.
function handle(err, msg) {
  if (err) {
    console.error("word_count endpoint stopped:", err.message);
    return;
  }
  let args;
  try {
    args = msg.json();
  } catch {
    msg.respondError(400, "arguments are not valid JSON");
    return;
  }
  if (args === null || typeof args !== "object" || typeof args.text !== "string") {
    msg.respondError(400, 'argument "text" (a string) is required');
    return;
  }
  msg.respond(JSON.stringify(wordCount(args.text)));
}

const opts = { servers, name: "agentbus-remote-tool-js" };
if (process.env.NATS_CREDS) {
  opts.authenticator = credsAuthenticator(readFileSync(process.env.NATS_CREDS));
}
const nc = await connect(opts);
const srv = await nc.services.add({
  name: "agentbus-tools",
  version: "1.0.0",
  description: "agentbus remote tools written in JavaScript",
});
srv.addEndpoint("word_count", {
  subject: "agentbus.tool.word_count",
  metadata: {
    description: "Count the words, lines and characters of a text.",
    schema: JSON.stringify(schema),
  },
  handler: handle,
});
// The endpoint's subscription is registered once the server has seen it.
await nc.flush();
console.log(`ready ${srv.info().id}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await srv.stop();
  await nc.drain();
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

const closed = await nc.closed();
if (closed && !stopping) {
  console.error("connection closed:", closed.message);
  process.exit(1);
}
