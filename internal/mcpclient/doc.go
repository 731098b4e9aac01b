// Package mcpclient connects agentbus to Model Context Protocol servers
// with the official Go SDK (github.com/modelcontextprotocol/go-sdk) and
// turns their tools into tools.Tool values the toolexec stage runs like
// any other: behind the firewall, with timeouts, concurrency and output
// limits, result scanning and step records.
//
// The servers are declared in the tools file (firewall.Config.MCPServers,
// see docs/mcp.md). A [Manager] runs one supervisor per server:
//
//   - stdio: the declared command is started with a minimal environment
//     (PATH, HOME, LANG, TMPDIR, USER and the declared variables, never
//     agentbus's own secrets), in its own process group, and restarted
//     with exponential backoff when it exits; on shutdown its stdin is
//     closed, then SIGTERM, then SIGKILL for the whole group.
//   - streamable HTTP: the declared URL with the declared headers (values
//     from literals or environment variables, resolved at start and never
//     logged); a failed ping or a broken call reconnects with the same
//     backoff.
//
// After the MCP handshake the supervisor lists the server's tools (again
// on every notifications/tools/list_changed) and decides, per tool,
// whether the model may be offered it:
//
//   - allowed: the server's allow patterns (path.Match on the server's
//     own tool name) or a policy declared under the offered name; deny by
//     default;
//   - named: offered as "<server>__<tool>" (firewall.MCPToolName), which
//     must be 1-64 characters of [A-Za-z0-9_-];
//   - schema: the input schema must compile in the firewall
//     (firewall.CheckSchema: $ref/$defs inside the document, no remote
//     references);
//   - description: the description and every description or title inside
//     the schema go through the prompt-injection scanner; a blocked one
//     keeps the tool from being offered (logged with the rules, visible in
//     [Manager.Status]); a flagged one is offered and logged.
//
// A tool whose server is down is withdrawn ([Tool.Available] is false;
// the caller stops offering it) and a call to it fails with
// tools.ErrUnavailable, as does a call during which the connection broke;
// the toolexec stage then ends the turn with service_unavailable instead
// of showing the model an error. Protocol errors and results with isError
// are shown to the model as "error: ...", as for every tool.
package mcpclient
