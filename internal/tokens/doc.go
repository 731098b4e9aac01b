// Package tokens counts the tokens of text and chat messages the way the
// model that will read them does.
//
// For known OpenAI model families it uses tiktoken-go with its offline loader
// (the BPE ranks are compiled into the binary, nothing is ever fetched):
//
//	gpt-4o*, gpt-4.1*, gpt-4.5*, gpt-5*, o1*, o3*, o4*, chatgpt-4o*  -> o200k_base
//	gpt-4*, gpt-3.5*                                                  -> cl100k_base
//
// Every other model (including "agentbus-offline" and the empty string) gets a
// byte estimate of ceil(len/4), which is what the origin used everywhere.
//
//	c := tokens.For("gpt-4o-mini")
//	n := c.CountMessages(msgs) // prompt tokens, with OpenAI's per-message overhead
//
// Guarantees: For never blocks on the network and never fails (an encoder
// that cannot be loaded degrades to the estimate); encoders are built once per
// process and shared; every Counter is safe for concurrent use;
// CountMessages is additive (CountMessages(a ++ b) = CountMessages(a) +
// CountMessages(b) - CountMessages(nil)), which the pruner relies on.
package tokens
