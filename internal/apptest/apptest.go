// Package apptest starts a whole agentbus system for tests: every stage in
// process, an embedded JetStream server on a random port, HTTP on a random
// port, data in t.TempDir(), no provider secrets from the environment.
package apptest

import (
	"context"
	"testing"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/testutil"
)

// Start runs a system with the test defaults, changed by mod, and closes
// it at cleanup.
func Start(t testing.TB, mod func(*app.Options)) *app.System {
	t.Helper()
	o := app.DefaultOptions()
	o.DataDir = t.TempDir()
	o.HTTPAddr = "127.0.0.1:0"
	o.Pipeline.Embedded.Listen = "127.0.0.1:-1"
	o.Getenv = func(string) string { return "" }
	o.Tools.Remote = false
	if mod != nil {
		mod(&o)
	}
	sys, err := app.Start(context.Background(), o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	return sys
}
