// Command persist runs agentbus's persist stage against a NATS server
// (--nats, default nats://127.0.0.1:4222). Run several to scale the stage:
// replicas share one durable consumer and split the work.
package main

import (
	"os"

	"github.com/agentbus/agentbus/internal/cli"
)

func main() {
	os.Exit(cli.RunStage("persist", cli.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}
