// Command agentbus runs the whole pipeline in one process on an embedded
// NATS server (the default: `go run ./cmd/agentbus`), and is the client
// and operator CLI (chat, keys, replay, audit, dlq, bench, ...). Run
// `agentbus help` for the commands.
package main

import (
	"os"

	"github.com/agentbus/agentbus/internal/cli"
)

func main() {
	os.Exit(cli.Main(cli.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}
