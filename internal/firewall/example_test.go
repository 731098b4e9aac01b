package firewall_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/agentbus/agentbus/internal/firewall"
)

func Example() {
	cfg, err := firewall.ParseConfig([]byte(`
tools:
  terminal:
    arguments:
      command:
        shell:
          roots: [/srv/work]
          programs:
            ls: {}
            grep: {}
            git: {subcommands: [status, log, diff]}
            rm: {deny_flags: [-r, -R, --recursive, -f, --force]}
  sql_console:
    arguments:
      query:
        sql: {dialect: postgres, statements: [select]}
`))
	if err != nil {
		panic(err)
	}
	fw, err := firewall.New(cfg, nil)
	if err != nil {
		panic(err)
	}
	for _, c := range []firewall.Call{
		{Name: "terminal", Arguments: `{"command": "git status && grep -rn TODO ."}`},
		{Name: "terminal", Arguments: `{"command": "rm --recursiv build"}`},
		{Name: "terminal", Arguments: `{"command": "/bin/r? -rf /"}`},
		{Name: "terminal", Arguments: `{"command": "git -c alias.x='!sh' x"}`},
		{Name: "terminal", Arguments: `{"command": "cat /etc/passwd"}`},
		{Name: "sql_console", Arguments: `{"query": "SELECT count(*) FROM orders"}`},
		{Name: "sql_console", Arguments: `{"query": "SELECT 1 /*!50000 ; DROP TABLE orders */"}`},
		{Name: "sql_console", Arguments: `{"query": "SELECT 1; DROP TABLE orders"}`},
		{Name: "Exec", Arguments: `{}`},
	} {
		v := fw.Check(c)
		fmt.Println(v.Verdict, v.Rule)
	}
	// Output:
	// allow tool.allowed
	// block shell.flag
	// block shell.glob
	// block shell.flag
	// block shell.program
	// allow tool.allowed
	// block sql.comment
	// block sql.multiple
	// block tool.denied
}

func ExampleRunJSONL() {
	cfg, _ := firewall.ParseConfig([]byte(`{"tools": {"sql_query": {"arguments": {"query": {"sql": {"statements": ["select"]}}}}}}`))
	fw, _ := firewall.New(cfg, nil)
	in := `{"tool":"sql_query","arguments":{"query":"DROP TABLE users"}}
{"tool":"sql_query","arguments":{"query":"SELECT * FROM users WHERE id = 1"}}
oops
`
	_ = firewall.RunJSONL(context.Background(), fw, strings.NewReader(in), os.Stdout)
	// Output:
	// {"verdict":"block","rule":"sql.statement","reason":"DROP statements are not allowed (allowed: select)"}
	// {"verdict":"allow","rule":"tool.allowed"}
	// {"verdict":"block","rule":"input.bad_json","reason":"line is not a JSON object: invalid character 'o' looking for beginning of value"}
}

func ExampleVerdict_Arguments() {
	cfg, _ := firewall.ParseConfig([]byte(`{"tools": {"read_file": {"arguments": {"path": {"path": {"roots": ["/srv/data"]}}}}}}`))
	fw, _ := firewall.New(cfg, nil)
	// The tool receives the canonical arguments, exactly what was checked.
	v := fw.Check(firewall.Call{Name: "read_file", Arguments: "{ \"path\" : \"/srv/data/a\\u002etxt\" }"})
	fmt.Println(v.Verdict, v.Arguments)
	// Duplicate keys are refused: parsers disagree on which one wins.
	v = fw.Check(firewall.Call{Name: "read_file", Arguments: `{"path":"/srv/data/a.txt","path":"/etc/passwd"}`})
	fmt.Println(v.Verdict, v.Rule)
	// Output:
	// allow {"path":"/srv/data/a.txt"}
	// block args.duplicate_key
}
