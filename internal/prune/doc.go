// Package prune fits a conversation into a token budget without breaking it.
//
// A conversation is cut into units: an assistant message with tool_calls
// together with every later tool message answering one of its calls (matched
// by tool_call_id) is one unit; every other message is a unit of its own.
// Units are kept or dropped whole, so a provider never sees a tool result
// without its call or a call without its results.
//
//	out := prune.Prune(history, prune.Config{Strategy: prune.Importance, Budget: 8000}, tokens.For(model))
//
// Strategies pick which optional units to keep:
//
//   - [Recent] keeps the newest units that fit, as one contiguous tail;
//   - [Window] keeps the units inside the last Window messages (then trims
//     the oldest of them to the budget, if one is set);
//   - [Importance] scores units ([ImportanceWeights]) and keeps the best
//     that fit, newest first among equals.
//
// Guarantees, for every strategy and every input:
//
//   - the output is a subsequence of the input (order preserved, no message
//     changed or invented);
//   - every system and developer message is kept;
//   - the current turn is kept: the latest user message and every message
//     after it (the tool rounds the model is in the middle of);
//   - tool-call units are kept or dropped whole;
//   - if Budget > 0 and the mandatory messages above fit, the output's
//     counter.CountMessages is at most Budget. If they do not fit, the
//     mandatory messages are returned anyway (and nothing else): dropping a
//     system prompt or the user's question is worse than a context-length
//     error the provider reports clearly.
//
// Budget <= 0 means no token limit. The counter must be additive (every
// counter of package tokens is).
package prune
