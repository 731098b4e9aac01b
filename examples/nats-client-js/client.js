// An agentbus client over NATS in JavaScript: a chat turn through the
// ingest stage's NATS entry (agentbus.ingest.chat), plain and streaming.
//
// What a client needs (docs/nats-clients.md):
//   - a client credential, issued by the operator:
//       agentbus nats creds --role client --name billing-bot --out billing-bot.creds
//     It may publish only to agentbus.ingest.chat and receive only on its
//     own inbox prefix, _INBOX_<name> (set it as the connection's
//     inboxPrefix: the server refuses any other inbox);
//   - an API key (agentbus keys create --user NAME): the same keys, users
//     and limits as the HTTP API. It goes in the Authorization header.
//
//   NATS_URL=nats://127.0.0.1:4222 NATS_CREDS=billing-bot.creds \
//   AGENTBUS_API_KEY=ab-... node client.js "What is 6*7?"
//
// It prints one JSON line: the plain answer, the streamed text, the number
// of chunks and the conversation id.
import { connect, credsAuthenticator, createInbox, headers } from "nats";
import { readFileSync } from "node:fs";

const servers = process.env.NATS_URL || "nats://127.0.0.1:4222";
const credsFile = process.env.NATS_CREDS;
const apiKey = process.env.AGENTBUS_API_KEY;
const question = process.argv[2] || "What is 6*7?";
if (!credsFile || !apiKey) {
  console.error("set NATS_CREDS (a client credential) and AGENTBUS_API_KEY");
  process.exit(2);
}

// identityName reads the identity's name from the credential's JWT: its
// inbox prefix is _INBOX_<name>.
export function identityName(creds) {
  const jwt = creds.toString().match(/-----BEGIN NATS USER JWT-----\s*(\S+)\s/);
  if (!jwt) throw new Error("not a NATS user credential");
  const payload = JSON.parse(Buffer.from(jwt[1].split(".")[1], "base64url").toString());
  return payload.name;
}

const creds = readFileSync(credsFile);
const inboxPrefix = `_INBOX_${identityName(creds)}`;
const nc = await connect({ servers, name: "agentbus-nats-client-js", authenticator: credsAuthenticator(creds), inboxPrefix });

function requestHeaders(conversation) {
  const h = headers();
  h.set("Authorization", `Bearer ${apiKey}`);
  if (conversation) h.set("X-Conversation-Id", conversation);
  return h;
}

// fail throws the OpenAI-style error of a reply.
function fail(msg) {
  const status = msg.headers?.get("Agentbus-Status");
  const body = JSON.parse(new TextDecoder().decode(msg.data));
  throw new Error(`agentbus answered ${status}: ${body.error?.code}: ${body.error?.message}`);
}

// 1. A plain request: one reply, an OpenAI chat.completion.
const body = (stream) => JSON.stringify({ model: "agentbus-offline", stream, messages: [{ role: "user", content: question }] });
const rep = await nc.request("agentbus.ingest.chat", body(false), { timeout: 120_000, headers: requestHeaders() });
if (rep.headers?.get("Agentbus-Event") !== "completion") fail(rep);
const completion = rep.json();
const conversation = rep.headers.get("X-Conversation-Id");

// 2. A streaming request in the same conversation: subscribe to an inbox
// of our own, publish with it as the reply subject, read chunks until
// "done" (or an "error").
const inbox = createInbox(inboxPrefix);
const sub = nc.subscribe(inbox);
nc.publish("agentbus.ingest.chat", body(true), { reply: inbox, headers: requestHeaders(conversation) });
let streamed = "";
let chunks = 0;
const timer = setTimeout(() => sub.unsubscribe(), 120_000);
for await (const m of sub) {
  const event = m.headers?.get("Agentbus-Event");
  if (event === "done") break;
  if (event === "error") fail(m);
  chunks++;
  const c = m.json();
  streamed += c.choices?.[0]?.delta?.content ?? "";
}
clearTimeout(timer);
sub.unsubscribe();

console.log(JSON.stringify({ plain: completion.choices[0].message.content, streamed, chunks, conversation }));
await nc.drain();
