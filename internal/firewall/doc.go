// Package firewall decides whether a tool call an LLM asked for may run.
//
// It replaces a substring search over serialized JSON, which blocked "how
// does sudo work" and let `rm -fr /`, `rm  -rf /`, `curl ... | bash` and a
// tool named "Exec" through. Here tool names are normalised before they
// are compared, arguments are parsed and validated against the tool's JSON
// Schema, and dangerous-argument rules look at the parsed string values
// with a shell-like tokeniser instead of at raw bytes:
//
//	fw, err := firewall.New(firewall.Config{}, registry.Schemas())
//	if err != nil { ... }
//	v := fw.Check(firewall.Call{Name: "ci_runner", Arguments: `{"command":"rm  -fr /"}`})
//	// v == Verdict{Verdict: "block", Rule: "shell.rm_recursive", Reason: "rm -fr deletes recursively or forcibly"}
//	vs := fw.CheckTurn(calls, round) // adds limit.max_calls / limit.max_rounds
//
// # Order of checks (deny wins)
//
//  1. Name. Compared after NormalizeName (NFKC, invisible characters
//     stripped, Cyrillic/Greek look-alikes folded, case folded) and without
//     separators, so "Exec", "ｅｘｅｃ", "e\u200bxec" and "run-command" match
//     the deny entries "exec" and "run_command". A denied name is blocked
//     ("tool.denied") even when it is also allowed. In allowlist mode (the
//     default) a tool that is not allowed is blocked ("tool.unknown").
//  2. Size ("args.too_large"), JSON syntax ("args.invalid_json"), a JSON
//     object ("args.not_object"), the tool's schema ("args.schema"; a small
//     JSON Schema subset, see New).
//  3. Every string value, recursively (JSON inside strings is unpacked up
//     to three levels), against the shell and SQL rules below.
//
// # Argument policy
//
// What a string is taken for depends on its key (the nearest object key;
// array elements inherit it) and on the tool:
//
//   - command keys (command, cmd, script, shell, args, argv, run, ...) and
//     every string of a shell tool (Config.ShellTools, or a name with a word
//     such as shell, terminal, command, ssh): a shell command line. All
//     rules apply, including chaining (";", "&&", "||", "&", newline) of any
//     second command ("shell.chain", unless Config.AllowChaining) and any
//     command substitution ("shell.substitution"). An array of strings
//     under args, argv, command or cmd is an argument vector, checked as a
//     whole (["bash","-c","rm -rf /"] is blocked, ["git","commit","-m",
//     "rm -rf explained"] is not); under commands, script or run each
//     element is a command line.
//   - code keys (code, source, snippet, ...): program source. The rules
//     apply to its string literals (os.system("rm -rf /")), to lines that
//     look like shell commands and to notebook "!" escapes; chaining is
//     normal syntax there. A sibling "language": "bash" makes it a command.
//   - prose keys (query, text, message, content, title, url, ...): never
//     treated as shell, so "how does sudo work" and "rm -rf explained for
//     beginners" pass a search tool.
//   - any other key (path, city, ...): every simple command in it is checked
//     ("x.txt; rm -rf /" is blocked), and chaining or substitution is
//     refused only when it introduces a known command.
//
// Shell rules: shell.rm_recursive (rm with -r/-R/-f/--recursive/--force/
// --no-preserve-root in any order or spelling, find -delete, rd /s,
// Remove-Item -Recurse), shell.pipe_to_shell (anything piped into an
// interpreter that reads its program from stdin, bash <(curl ...),
// sh -c "$(curl ...)"), shell.sudo (sudo, su, doas, pkexec), shell.chmod
// (777, a+rwx, setuid), shell.mkfs (mkfs*, wipefs, fdisk, shred),
// shell.dd_device (dd of=/dev/...), shell.device_write (> /dev/sda),
// shell.fork_bomb, shell.reverse_shell (/dev/tcp, nc -e), shell.shutdown,
// shell.encoded_command (powershell -EncodedCommand), shell.chain,
// shell.substitution. Wrappers are looked through: env, xargs, nohup,
// timeout, nice, busybox, find -exec, bash -c, sh -c, python -c, eval,
// ssh host '...'. Quoting and spacing tricks do not hide a command: the
// tokeniser removes quotes and backslashes as sh does, treats runs of
// blanks and $IFS as one separator, and decodes $'\x72m'.
//
// SQL rules (sql.drop for DROP TABLE/DATABASE/SCHEMA, sql.truncate,
// sql.delete_all for DELETE without WHERE or with WHERE 1=1,
// sql.update_all, sql.alter_drop, sql.command_exec for xp_cmdshell and
// COPY ... FROM/TO PROGRAM) run on every string of an SQL tool
// (Config.SQLTools, or a name with sql, db, database, postgres, ...) and on
// query/sql/statement keys when the value parses as an SQL statement, so
// "delete from the shopping list" passes a search tool. Comments and
// string literals are removed first (DROP/**/TABLE is caught, SELECT
// 'DROP TABLE x' is not).
//
// # Guarantees
//
// Check never panics and is deterministic; it is safe for concurrent use.
// Its work is linear in the argument size times a small nesting bound;
// input nested deeper than the bound is blocked ("args.too_complex"), never
// waved through. Every block names its rule and gives a reason.
//
// The firewall does not sandbox anything: it cannot see through variables,
// aliases, scripts written to disk and run later, or code that builds
// commands at run time (subprocess.run(["rm", "-rf", "/"]) in Python is not
// recognised). Tools that run code need a sandbox as well.
package firewall
