// Command audit-stage is a custom agentbus stage written in Go with the
// public packages only (pipeline and messages): it keeps an audit trail of
// every turn that ends, one JSON line per turn (completed, rejected or
// failed), in a file or on standard output.
//
// It declares what it does on the bus in contract.json; the operator
// issues its NATS credential from the same file, so its permissions are
// exactly that contract:
//
//	agentbus nats creds --contract contract.json --name audit-1 --out audit.creds
//	go run ./examples/audit-stage --nats nats://127.0.0.1:4222 --creds audit.creds --out audit.jsonl
//
// The runtime gives it what every agentbus stage has: its own durable pull
// consumer per event (run more copies to share the work), retries and a
// dead-letter queue, graceful drain, health and a NATS micro service
// (agentbus-audit).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS server URL")
	creds := flag.String("creds", "", "NATS credential of the stage (agentbus nats creds --contract contract.json ...)")
	contract := flag.String("contract", "contract.json", "the stage's contract")
	out := flag.String("out", "", "append the audit trail to this file (default: standard output)")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := Config{NATSURL: *natsURL, Creds: *creds, ContractFile: *contract}
	if err := Run(ctx, cfg, w, log); err != nil {
		log.Error("audit stage", "err", err)
		os.Exit(1)
	}
}
