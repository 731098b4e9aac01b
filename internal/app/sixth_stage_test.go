package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go/jetstream"
)

// auditStage is a sixth stage, written as a stage package would be: a
// contract, a Config and Deps, New and Stage. It keeps, for every
// completed turn, the user and model in its own KV bucket.
type auditStage struct {
	kv jetstream.KeyValue
}

const auditBucket = "agentbus_audit_test"

var auditContract = pipeline.Contract{
	Stage:    "audit",
	Consumes: []string{messages.EventCompleted},
	KV:       []pipeline.KVUse{{Bucket: auditBucket, Write: true}},
}

func (a *auditStage) handleCompleted(msg *message.Message) ([]*message.Message, error) {
	c, err := pipeline.Decode[messages.Completed](msg)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(map[string]string{"user": c.User, "model": c.Model})
	_, err = a.kv.Put(msg.Context(), c.RequestID, b)
	return nil, err
}

func (a *auditStage) Stage() pipeline.Stage {
	return pipeline.Stage{
		Contract:       auditContract,
		Handlers:       map[string]message.HandlerFunc{messages.EventCompleted: a.handleCompleted},
		HandlerTimeout: 5 * time.Second,
	}
}

// The stage table's promise: a new stage is one package and one row. The
// row below is the whole change; its NATS identity, consumer, dead
// letters, health and micro service come from the runtime and the
// contract.
func TestASixthStageIsOneRow(t *testing.T) {
	row := app.StageSpec{Contract: auditContract, Build: func(ctx context.Context, p *app.Parts) (pipeline.Stage, error) {
		nc, err := p.Conn("audit") // under the stage's own identity
		if err != nil {
			return pipeline.Stage{}, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return pipeline.Stage{}, err
		}
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auditBucket})
		if err != nil {
			return pipeline.Stage{}, err
		}
		return (&auditStage{kv: kv}).Stage(), nil
	}}
	sys := startSystem(t, func(o *app.Options) {
		o.Table = append(slices.Clone(app.StageTable), row)
		o.Stages = append(slices.Clone(app.AllStages), "audit")
	})
	key := newKey(t, sys, "alice")
	r := post(t, sys, key, "", chatBody("hello, sixth stage"))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	rid := r.header.Get("X-Request-Id")

	// The audit stage saw the completed turn and wrote its own bucket.
	nc, err := sys.Connect("test-operator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), auditBucket)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var e jetstream.KeyValueEntry
	for {
		if e, err = kv.Get(context.Background(), rid); err == nil || time.Now().After(deadline) {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the audit stage did not record %s: %v", rid, err)
	}
	var rec map[string]string
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec["user"] != "alice" || rec["model"] != "agentbus-offline" {
		t.Fatalf("audit record %s: %v", e.Value(), err)
	}

	// It runs under its own identity, with the permissions its contract
	// grants: it cannot publish a turn event.
	t.Run("least privilege", func(t *testing.T) {
		anc, err := sys.Runtime.StageConn("audit")
		if err != nil {
			t.Fatal(err)
		}
		ajs, _ := jetstream.New(anc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := ajs.Publish(ctx, messages.Subject(messages.EventReceived, "forged1"), []byte(`{}`)); err == nil {
			t.Fatal("the audit identity published a received event")
		}
	})

	// It has a health endpoint like any stage, and /health expects it.
	t.Run("health", func(t *testing.T) {
		code, h := healthy(t, sys, "/health", key) // details need a key
		stages, _ := h["stages"].(map[string]any)
		if code != 200 || h["status"] != "healthy" || stages["audit"] == nil {
			t.Fatalf("/health %d %v", code, h)
		}
	})
}
