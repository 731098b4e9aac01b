package messages_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/messages"
)

// Every event has one route, in Events order; every stage named is a
// stage; the flow reaches a terminal event from received.
func TestRoutesCoverEveryEvent(t *testing.T) {
	var events []string
	for _, r := range messages.Routes {
		events = append(events, r.Event)
		for _, s := range append(slices.Clone(r.From), r.To...) {
			if !slices.Contains(messages.Stages, s) {
				t.Errorf("route of %s names %q, not a stage", r.Event, s)
			}
		}
		if len(r.From) == 0 {
			t.Errorf("nobody publishes %s", r.Event)
		}
		if messages.Terminal(r.Event) && r.Event != messages.EventCompleted && len(r.To) > 0 {
			t.Errorf("terminal event %s is consumed by %v", r.Event, r.To)
		}
	}
	if !slices.Equal(events, messages.Events) {
		t.Fatalf("routes cover %v, want %v", events, messages.Events)
	}
	// Follow the durable consumers from received: every stage is reached,
	// and so is every event.
	seen := map[string]bool{}
	var walk func(event string)
	walk = func(event string) {
		if seen[event] {
			return
		}
		seen[event] = true
		r, _ := messages.RouteOf(event)
		for _, s := range r.To {
			for _, ev := range messages.ProducedBy(s) {
				walk(ev)
			}
		}
	}
	walk(messages.EventReceived)
	for _, ev := range messages.Events {
		if !seen[ev] {
			t.Errorf("%s cannot be reached from received", ev)
		}
	}
	if got := messages.ConsumedBy(messages.StageLLM); !slices.Equal(got, []string{messages.EventAdmitted, messages.EventTooled}) {
		t.Errorf("llm consumes %v", got)
	}
	if got := messages.ProducedBy(messages.StageIngest); !slices.Equal(got, []string{messages.EventReceived, messages.EventFailed}) {
		t.Errorf("ingest produces %v", got)
	}
	if _, ok := messages.RouteOf("nope"); ok {
		t.Error("route of an unknown event")
	}
}

// The event table of docs/nats-clients.md says what messages.Routes says:
// its "Published by" and "Consumed by" columns name exactly the route's
// stages.
func TestRoutesMatchTheClientDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "nats-clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	stageWord := regexp.MustCompile(`\b(` + strings.Join(messages.Stages, "|") + `)\b`)
	names := func(cell string) []string {
		var out []string
		for _, s := range stageWord.FindAllString(cell, -1) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s []string) []string {
		s = slices.Clone(s)
		slices.Sort(s)
		return s
	}
	var header []string
	found := map[string]bool{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if !strings.HasPrefix(line, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		from, to := slices.Index(header, "Published by"), slices.Index(header, "Consumed by")
		if header[0] != "Event" || from < 0 || to < 0 || len(cells) != len(header) {
			continue
		}
		r, ok := messages.RouteOf(cells[0])
		if !ok {
			continue // the separator row
		}
		found[r.Event] = true
		if got, want := names(cells[from]), sorted(r.From); !slices.Equal(got, want) {
			t.Errorf("docs: %s published by %v; messages.Routes says %v", r.Event, got, want)
		}
		if got, want := names(cells[to]), sorted(r.To); !slices.Equal(got, want) {
			t.Errorf("docs: %s consumed by %v; messages.Routes says %v", r.Event, got, want)
		}
	}
	for _, ev := range messages.Events {
		if !found[ev] {
			t.Errorf("docs/nats-clients.md has no row for event %s in its Event/Published by/Consumed by table", ev)
		}
	}
}

// A streaming turn's deltas go to the receiver it names, and a receiver
// that is not a valid id is refused by Validate and never becomes part of
// a subject.
func TestDeltaSubject(t *testing.T) {
	for _, tc := range []struct {
		streamTo, subject string
		valid             bool
	}{
		{"", "agentbus.stream.r1", true},
		{"ingest_7f3a", "agentbus.stream.ingest_7f3a.r1", true},
		{"a.b", "agentbus.stream.r1", false},
		{"*", "agentbus.stream.r1", false},
		{">", "agentbus.stream.r1", false},
	} {
		turn := messages.Turn{RequestID: "r1", ConversationID: "c1", User: "u", Endpoint: "nats", Stream: true, StreamTo: tc.streamTo,
			Messages: []messages.Message{{Role: messages.RoleUser, Content: "hi"}}}
		if got := turn.DeltaSubject(); got != tc.subject {
			t.Errorf("StreamTo %q: deltas on %q, want %q", tc.streamTo, got, tc.subject)
		}
		if err := turn.Validate(); (err == nil) != tc.valid {
			t.Errorf("StreamTo %q: Validate() = %v, want valid %v", tc.streamTo, err, tc.valid)
		}
	}
}
