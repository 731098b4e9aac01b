// Package apptest starts a whole agentbus system for tests: every stage in
// process, an embedded JetStream server on a random port, HTTP on a random
// port, data in t.TempDir(), no provider secrets from the environment.
package apptest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
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

// Publish puts v (JSON) on the stream as event of request rid, with the
// message id the pipeline would give it, as a client or a stage would.
func Publish(js nats.JetStreamContext, event, rid string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m := nats.NewMsg(messages.Subject(event, rid))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, event, 0))
	_, err = js.PublishMsg(m)
	return err
}

// Turn is a one-message user turn in conversation "conv_"+rid.
func Turn(rid, user, text string) messages.Turn {
	return messages.Turn{SchemaVersion: messages.SchemaVersion, RequestID: rid, ConversationID: "conv_" + rid, User: user, Endpoint: "nats",
		Messages: []messages.Message{{Role: messages.RoleUser, Content: text}}, CreatedAt: time.Now().UTC()}
}
