// Package firewall decides whether a tool call an LLM asked for may run.
//
// The operator declares the tools and, for every argument, a policy that
// says what it may be; everything else is refused. Arguments are parsed
// the way the tool will parse them (a command line with a real bash
// parser, SQL with the database's lexing rules, Python with Python's
// tokenisation), because the tool's parser, not the text, decides what
// runs; what the firewall cannot parse the same way is refused, never
// guessed.
//
//	cfg, err := firewall.LoadConfig("tools.yaml") // or ParseConfig, or a Config literal
//	fw, err := firewall.New(cfg, registry.Schemas())
//	v := fw.Check(firewall.Call{Name: "terminal", Arguments: `{"command":"rm --recursiv build"}`})
//	// v.Verdict == "block", v.Rule == "shell.flag",
//	// v.Reason == "--recursiv is a spelling of --recursive, which the policy denies for rm"
//	v = fw.Check(firewall.Call{Name: "terminal", Arguments: `{"command":"go test ./..."}`})
//	// v.Allowed(); executor.Execute(ctx, "terminal", json.RawMessage(v.Arguments))
//	vs := fw.CheckTurn(calls, round) // adds limit.max_calls and limit.max_rounds
//
// # Configuration
//
// A tools file (YAML or JSON, read by ParseConfig) holds a Config: the
// declared tools and their policies, plus the name lists and limits. It
// is what `agentbus serve --tools FILE` runs with and what `agentbus
// firewall --tools FILE` checks a JSONL table of calls against offline.
// docs/tools.md documents every field; docs/tools.example.yaml declares a
// terminal, a read-only SQL console, a keyed read-write SQL tool, a Python
// runner, a file reader and a web fetch.
//
//	tools:
//	  terminal:
//	    remote: true                     # a remote tool the operator allows
//	    arguments:
//	      command:
//	        shell:
//	          roots: [/srv/work]
//	          programs:
//	            ls: {}
//	            git: {subcommands: [status, log, diff]}
//	            rm: {deny_flags: [-r, --recursive, -f, --force]}
//	  read_file:
//	    arguments:
//	      path: {path: {roots: [/srv/data], deny: [/srv/data/secrets]}}
//
// # Order of checks (deny wins)
//
//  1. Name ("tool.*"). Names are compared after NormalizeName (NFKC,
//     invisible characters stripped, Cyrillic and Greek look-alikes folded,
//     case folded), so "TERMINAL" gets the terminal's policy and "Exec",
//     "ｅｘｅｃ" and "e\u200bxec" match the deny entry "exec". A denied
//     name is refused even when declared ("tool.denied"); the default deny
//     list spares declared tools. In allowlist mode (the default) a tool
//     that is neither declared, nor in Allow, nor (when Allow is empty) a
//     tool with a schema is refused ("tool.unknown").
//  2. Decoding ("args.*"). The arguments are decoded once, strictly: size,
//     JSON syntax, a JSON object, nesting; duplicate keys and keys that
//     differ only in case ("args.duplicate_key"), invalid UTF-8, lone
//     UTF-16 surrogates and numbers that overflow a float64
//     ("args.encoding") are refused, because parsers read them differently.
//     The canonical encoding of what was decoded (Verdict.Arguments) is
//     what the tool must receive; the toolexec stage passes it.
//  3. Keys and schemas. A key that is not declared but differs only in
//     case from a declared argument or schema property ("PATH" for "path",
//     which a Go struct would fill) is refused ("args.key_case"). The
//     arguments are validated against the schema the tool publishes and
//     the schema the tools file pins ("args.schema"; JSON Schema draft
//     2020-12 with $ref and $defs, see New).
//  4. Policy. Every argument of a declared tool must be declared
//     ("args.undeclared") and is checked by its kind: shell, argv, sql,
//     python, path, url or data ("args.type" when the JSON type does not
//     fit). A tool without a policy is checked against its schema only, and
//     refused when its name or an argument says it runs commands, code or
//     SQL ("policy.required").
//
// # Shell (kinds shell and argv)
//
// A command line is parsed with mvdan.cc/sh/v3 as bash; a line it cannot
// parse, or with control characters, is refused ("shell.syntax"). Then:
//
//   - every program must be listed in Programs, by exact name, or by its
//     path in /bin, /usr/bin, /usr/local/bin, /sbin or /usr/sbin
//     ("shell.program"); programs that run commands in ways the firewall
//     does not model (sudo, busybox, eval, source, crontab, ...) cannot be
//     listed;
//   - the program name must be literal: expansions, substitutions, globs,
//     braces and tilde refuse the call ("shell.expansion", "shell.glob");
//     in arguments expansions are refused too, and globs must be anchored
//     so no expansion turns into a flag (ShellPolicy.Globs);
//   - operators must be allowed ("shell.operator"; "&" is not by default);
//     functions, arithmetic, [[ ]], declarations and coprocesses are
//     refused ("shell.construct"); so are variable assignments, unless the
//     variable is in Env ("shell.env");
//   - flags are matched in every spelling getopt accepts, bundles ("-vRf"),
//     GNU abbreviations ("--recursiv"), values ("--recursive=yes") and
//     aliases ("-f" and "--force"): a denied flag, a flag outside the
//     program's allowlist, and a flag the firewall knows to run a command,
//     load code or leave the roots (find -delete, sort --compress-program,
//     tar --to-command, git -c, go -toolexec, ...) unless the program's
//     Flags list it, are refused ("shell.flag"); subcommands likewise
//     ("shell.subcommand": git config, go run, an alias that is not a git
//     command);
//   - every argument that may be a path (operands, flag values, redirection
//     targets, "x=/path", "@file") must stay under the roots: ".." is
//     refused anywhere, absolute paths must be under Roots, DenyPaths
//     components (".git") are refused ("shell.path", "shell.redirect");
//   - program models check what programs do with their arguments: the
//     command run by find -exec, env, timeout, nice, ssh (remotely) or
//     sh -c is checked by the same policy; xargs may only run the programs
//     listed as its subcommands; awk and sed programs are parsed and
//     refused when they run commands or touch files ("shell.code"); inline
//     Python (python3 -c) is checked by the policy's python policy, other
//     inline code and programs read from standard input are refused; chmod
//     modes that add setuid, setgid, sticky or group/other write are
//     refused ("shell.mode"); kill of -1, 0, 1 or a group ("shell.signal");
//     container bind mounts outside the roots or of the working directory
//     itself ("shell.mount") and privileged containers; ssh -o options
//     other than a safe list
//     ("shell.option").
//
// An argv argument is an argument vector run without a shell: its words
// are literal and the same program rules apply.
//
// # SQL
//
// The statement is lexed in the policy's dialect (PostgreSQL, MySQL,
// SQLite, or any: then what dialects read differently is refused):
// executable comments (/*! */) are refused ("sql.comment"), and so is more
// than one statement ("sql.multiple"). The statement kind must be allowed,
// and so must statements nested in parentheses ("sql.statement"); INTO
// outside INSERT ("sql.into"), row locks in a read-only policy
// ("sql.lock"), functions outside the built-in side-effect-free set and
// the policy's ("sql.function") and tables outside the policy's
// ("sql.table") are refused; UPDATE and DELETE need a WHERE that matches a
// key column against literal values in a top-level conjunction without OR
// ("sql.where"), which no always-true predicate does.
//
// # Python
//
// Source is tokenised as Python 3 (NFKC identifiers, f-string fields as
// code); IPython escapes and what does not tokenise are refused
// ("python.syntax"). Imports must be listed ("python.import"); builtins
// that run code, open files or reach the interpreter are refused
// ("python.builtin"); dunder, frame and code attributes, private
// attributes of other objects, module-reaching attributes and string
// resolvers (operator.attrgetter, typing.get_type_hints) are refused
// ("python.attribute"). String contents are data.
//
// # Paths and URLs
//
// A path is refused when tools could read it differently ("path.syntax":
// backslashes, percent escapes, control characters, shell metacharacters,
// a leading ~, a scheme; "path.traversal": ".."), or when it is outside the
// roots ("path.root") or under a denied directory ("path.denied"); relative
// paths need a base ("path.relative"); with Resolve, symbolic links are
// resolved first. A URL must be plain (scheme://host[:port]/..., ASCII, no
// user info, backslashes or percent-encoded host) and its scheme, host and
// port allowed ("url.*"); IP literals and numeric hosts only when listed.
//
// # Guarantees
//
// Check never panics and is deterministic; it is safe for concurrent use.
// Its work is linear in the argument size times small nesting bounds;
// input past a bound is blocked ("args.too_complex"), never waved through.
// Every block names its rule and gives a reason.
//
// The firewall is not a sandbox. It checks what a call asks for, not what
// the files it names contain or what a build runs: an allowed
// interpreter runs any script file, go test runs tests, make runs
// recipes, git runs hooks and configured commands of the repository it
// runs in, and a path can be a symbolic link out of the roots when the
// check is lexical. Tools that run code need a sandbox as well.
package firewall
