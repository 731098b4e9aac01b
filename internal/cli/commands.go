package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/agentbus/agentbus/internal/app"
)

// command is one entry of the command table: what `agentbus --help`
// lists, what run dispatches, what `-h` explains and what shell completion
// offers.
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	run     func(env Env, args []string) error // called with the arguments after the name
	subs    []command                          // subcommands (run is nil in them): args[0] names one
}

// commands is the command table. serve is also what runs when the first
// argument is a flag or there is none.
var commands []command

func init() { // a var initializer would refer to itself through help and completion
	commands = []command{
		{name: "serve", args: "[flags]", summary: "run every stage in one process (embedded NATS by default)",
			run: func(env Env, args []string) error { return serve(env, args, app.AllStages, "agentbus") }},
		{name: "chat", args: `[flags] "text"`, summary: "send a chat turn, print the answer", run: chat},
		{name: "keys", args: "create|list|revoke", summary: "manage API keys in the running system", run: keys, subs: []command{
			{name: "create", args: "--user NAME [--rpm N] [--tpm N] [--models a,b] [--cache] [flags]", summary: "issue a key for a user; the key is printed once"},
			{name: "list", args: "[flags]", summary: "list keys: ids, users, limits, status (never the secrets)"},
			{name: "revoke", args: "KEY_ID [flags]", summary: "revoke a key"},
		}},
		{name: "sanitize", args: "[--explain] [--results] [flags]", summary: `JSONL {"text": ...} on stdin -> verdicts (and the deciding passage) on stdout`, run: sanitizeCmd},
		{name: "firewall", args: "[flags]", summary: `JSONL {"tool": ..., "arguments": {...}} on stdin -> verdicts`, run: firewallCmd},
		{name: "history", args: "CONVERSATION_ID [--json] [--pruned --budget N --strategy S] | --list | --delete", summary: "print, list or delete stored conversations", run: history},
		{name: "replay", args: "[--conversation ID] [--since TIME | --from-seq N] [--json]", summary: "print the turn events of the stream", run: replayCmd},
		{name: "audit", args: "[--max-turns N --forbid-tool X --require-tool Y --must-contain S ...] [--verify]", summary: "check the stream against constraints, or (--verify) the store's hash chain", run: auditCmd},
		{name: "dlq", args: "list|show ID|redrive ID|redrive --all", summary: "inspect and redrive dead letters", run: dlq, subs: []command{
			{name: "list", args: "[flags]", summary: "list dead letters: id, stage, subject, attempts, reason"},
			{name: "show", args: "ID [flags]", summary: "print one dead letter with its payload"},
			{name: "redrive", args: "ID | --all [flags]", summary: "republish dead letters on their turn subject and remove them"},
		}},
		{name: "rebuild", args: "[--data DIR] [--store sqlite|files] [flags]", summary: "re-materialise the conversation store from the stream", run: rebuild},
		{name: "nats", args: "init|creds|config|permissions", summary: "NATS identities: credentials for stages, tools, clients", run: natsCmd, subs: []command{
			{name: "init", args: "[--data DIR] [--config FILE] [--creds-dir DIR]", summary: "create the NATS authority in DIR/auth (serve does this on its first start with the embedded server); " +
				"--config also writes the server's trust configuration, --creds-dir one credential per stage and for the operator (DIR/<role>/nats.creds), each only if missing"},
			{name: "creds", args: "--role ROLE | --contract FILE --name NAME [--tools a,b] [--expires 720h] [--out FILE]", summary: "issue a credentials file for one identity; roles: " + strings.Join(app.Roles, ", ") +
				"; --contract: a stage of your own, with exactly the permissions of its contract (examples/audit-stage)"},
			{name: "config", args: "[--out FILE]", summary: "write the trust configuration of an external NATS server or cluster node (include it from nats-server.conf)"},
			{name: "permissions", args: "[--role ROLE | --contract FILE]", summary: "print what each role (or a stage of your own) may publish and subscribe to"},
		}},
		{name: "usage", args: "[--user U] [--since 7d] [--json] [flags]", summary: "spend per day, API key, user and model: calls, tokens, cost (serve with --prices)", run: usageCmd},
		{name: "bench", args: "[-n N] [-c 1,16,64] [--json] [--cpuprofile FILE]", summary: "measure the pipeline against raw JetStream on an embedded server", run: benchCmd},
		{name: "completion", args: "bash|zsh", summary: "print a shell completion script", run: completion},
		{name: "help", args: "[COMMAND [SUBCOMMAND]]", summary: "print this help, or a command's", run: helpCmd},
	}
}

// findCommand returns the table entry for a command path ("keys create").
func findCommand(path string) (command, bool) {
	name, sub, _ := strings.Cut(path, " ")
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	c := commands[i]
	if sub == "" {
		return c, true
	}
	j := slices.IndexFunc(c.subs, func(s command) bool { return s.name == sub })
	if j < 0 {
		return command{}, false
	}
	return c.subs[j], true
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// dispatch runs a command of the table. A command with subcommands
// explains itself on -h (exit 0) and when its subcommand is missing or
// unknown (exit 2); the subcommand's own flags answer `CMD SUB -h`.
func dispatch(env Env, c command, args []string) error {
	if len(c.subs) > 0 {
		switch {
		case len(args) > 0 && isHelp(args[0]):
			writeCommandUsage(env.Stdout, c)
			return nil
		case len(args) == 0:
			writeCommandUsage(env.Stderr, c)
			return fmt.Errorf("%w: agentbus %s needs a command", ErrUsage, c.name)
		}
		if _, ok := findCommand(c.name + " " + args[0]); !ok {
			writeCommandUsage(env.Stderr, c)
			return fmt.Errorf("%w: unknown %s command %q", ErrUsage, c.name, args[0])
		}
	}
	return c.run(env, args)
}

// writeUsage writes the top-level help, generated from the table.
func writeUsage(w io.Writer) {
	const col = 42 // where summaries start
	fmt.Fprint(w, "agentbus: an event-driven harness for LLM agents over NATS JetStream.\n\nUsage:\n")
	for _, c := range commands {
		name := c.name
		if name == "serve" {
			name = "[serve]"
		}
		line := "  agentbus " + name + " " + c.args
		if len(line) > col-2 { // long synopsis: summary on its own line
			fmt.Fprintf(w, "%s\n%*s%s\n", line, col, "", c.summary)
			continue
		}
		fmt.Fprintf(w, "%-*s%s\n", col, line, c.summary)
	}
	fmt.Fprint(w, `
Run 'agentbus COMMAND -h' for a command's flags. Every flag of serve and
of the commands that connect to a running system has an environment
equivalent (AGENTBUS_<FLAG>, e.g. AGENTBUS_NATS for --nats).
`)
}

// writeCommandUsage explains a command with subcommands.
func writeCommandUsage(w io.Writer, c command) {
	fmt.Fprintf(w, "Usage: agentbus %s %s\n\n%s.\n\nCommands:\n", c.name, c.args, capitalize(c.summary))
	for _, s := range c.subs {
		fmt.Fprintf(w, "  agentbus %s %s %s\n      %s\n", c.name, s.name, s.args, wrap(s.summary, 66, "      "))
	}
	fmt.Fprintf(w, "\nRun 'agentbus %s COMMAND -h' for a command's flags.\n", c.name)
}

// helpCmd is `agentbus help [COMMAND [SUBCOMMAND]]`: the same text as
// `agentbus COMMAND [SUBCOMMAND] -h`.
func helpCmd(env Env, args []string) error {
	f := newFlags(env, "help")
	if err := f.parse(args); err != nil {
		return err
	}
	if args = f.Args(); len(args) == 0 {
		writeUsage(env.Stdout)
		return nil
	}
	c, ok := findCommand(args[0])
	if !ok || len(args) > 2 {
		writeUsage(env.Stderr)
		return fmt.Errorf("%w: no help for %q", ErrUsage, strings.Join(args, " "))
	}
	return dispatch(env, c, append(args[1:], "-h"))
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// wrap breaks s into lines of at most width bytes, continuing with indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(s) {
		if i > 0 && n+1+len(word) > width {
			b.WriteString("\n" + indent)
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}
