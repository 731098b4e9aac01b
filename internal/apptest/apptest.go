// Package apptest starts a whole agentbus system for tests: every stage in
// process, an embedded JetStream server on a random port, HTTP on a random
// port, data in t.TempDir(), no provider secrets from the environment.
package apptest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// CredsFile issues a credential for identity name in role from the
// system's authority and returns the path of its file (in t.TempDir()).
func CredsFile(t testing.TB, sys *app.System, role, name string, opt app.GrantOptions) string {
	t.Helper()
	if sys.Authority == nil {
		t.Fatal("the system has no NATS authority")
	}
	return AuthorityCreds(t, sys.Authority, role, name, opt)
}

// AuthorityCreds issues a credential for identity name in role from a and
// returns the path of its file (in t.TempDir()).
func AuthorityCreds(t testing.TB, a *natsauth.Authority, role, name string, opt app.GrantOptions) string {
	t.Helper()
	g, err := app.Grant(role, name, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Creds(name, g, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Conn connects to the system's NATS server over its client port as the
// identity name in role, and closes the connection at cleanup. Permission
// errors are collected on the returned channel (nats.go reports them
// asynchronously).
func Conn(t testing.TB, sys *app.System, role, name string, opt app.GrantOptions) (*nats.Conn, <-chan error) {
	t.Helper()
	co, err := pipeline.CredsFile(CredsFile(t, sys, role, name, opt)).ConnectOptions("")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	co = append(co, nats.Name(name), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	nc, err := nats.Connect(sys.Runtime.URL(), co...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// Publish puts v (JSON) on the stream as event of request rid, with the
// message id the pipeline would give it, as a client or a stage would.
func Publish(js jetstream.JetStream, event, rid string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m := nats.NewMsg(messages.Subject(event, rid))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, event, 0))
	_, err = js.PublishMsg(context.Background(), m)
	return err
}

// Turn is a one-message user turn in conversation "conv_"+rid.
func Turn(rid, user, text string) messages.Turn {
	return messages.Turn{SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: "conv_" + rid, User: user, Endpoint: "nats",
		Messages: []messages.Message{{Role: messages.RoleUser, Content: text}}, CreatedAt: time.Now().UTC()}
}
