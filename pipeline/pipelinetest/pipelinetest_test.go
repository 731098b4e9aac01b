package pipelinetest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/agentbus/agentbus/pipeline/pipelinetest"
)

func TestSteps(t *testing.T) {
	ctx := context.Background()
	s := pipelinetest.NewSteps(t)
	s.Limit = 64
	var v string

	cl, found, err := s.Begin(ctx, "k1", time.Minute, &v)
	if err != nil || found || cl == nil {
		t.Fatalf("first Begin: %v %v %v", cl, found, err)
	}
	if _, _, err := s.Begin(ctx, "k1", time.Minute, &v); !errors.Is(err, pipeline.ErrStepBusy) {
		t.Fatalf("Begin of a held step: %v", err)
	}
	if err := cl.Put(ctx, "result"); err != nil {
		t.Fatal(err)
	}
	if cl2, found, err := s.Begin(ctx, "k1", time.Minute, &v); err != nil || !found || cl2 != nil || v != "result" {
		t.Fatalf("Begin of a recorded step: %v %v %v %q", cl2, found, err, v)
	}

	cl, _, _ = s.Begin(ctx, "k2", time.Minute, &v)
	cl.Release()
	if cl, found, err := s.Begin(ctx, "k2", time.Minute, &v); err != nil || found || cl == nil {
		t.Fatalf("Begin after Release: %v %v %v", cl, found, err)
	} else if err := cl.Put(ctx, string(make([]byte, 100))); !errors.Is(err, pipeline.ErrStepTooLarge) {
		t.Fatalf("Put over the limit: %v", err)
	}
	if _, found, err := s.Begin(ctx, "k2", time.Minute, &v); !found || !errors.Is(err, pipeline.ErrStepTooLarge) {
		t.Fatalf("Begin of a too large step: %v %v", found, err)
	}
	if begins, puts, releases := s.Counts(); begins != 6 || puts != 2 || releases != 1 {
		t.Fatalf("counts %d %d %d", begins, puts, releases)
	}
}

func TestDeliver(t *testing.T) {
	m := pipelinetest.Deliver(t, messages.EventAdmitted, "req1", 2, messages.Admitted{})
	if m.Metadata.Get(pipeline.MetaSubject) != messages.Subject(messages.EventAdmitted, "req1") ||
		m.UUID != messages.MsgID("req1", messages.EventAdmitted, 2) || pipeline.Delivered(m) != 1 || m.Context().Err() != nil {
		t.Fatalf("delivered %+v", m.Metadata)
	}
	if r := pipelinetest.Redeliver(t, pipelinetest.Redeliver(t, m)); pipeline.Delivered(r) != 3 || r.UUID != m.UUID {
		t.Fatalf("redelivered %+v", r.Metadata)
	}
}

// A handler is tested as the runtime would run it, without NATS.
func ExampleDeliver() {
	t := &testing.T{}
	echo := func(msg *message.Message) ([]*message.Message, error) {
		turn, err := pipeline.Decode[messages.Turn](msg)
		if err != nil {
			return nil, err
		}
		out, err := pipeline.NewEvent(messages.EventCompleted, turn.RequestID, 0, messages.Completed{RequestID: turn.RequestID})
		return []*message.Message{out}, err
	}
	in := pipelinetest.Deliver(t, messages.EventReceived, "req1", 0, messages.Turn{RequestID: "req1"})
	out, err := echo(in)
	fmt.Println(len(out), out[0].Metadata.Get(pipeline.MetaSubject), err)
	// Output: 1 agentbus.turn.completed.req1 <nil>
}
