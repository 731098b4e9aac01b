package pipeline_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

func TestParseContract(t *testing.T) {
	tests := []struct {
		name, in, err string
		want          pipeline.Contract
	}{
		{name: "audit", in: `{"stage":"audit","consumes":["completed","failed"],"kv":[{"bucket":"audit_seen","write":true}]}`,
			want: pipeline.Contract{Stage: "audit", Consumes: []string{"completed", "failed"}, KV: []pipeline.KVUse{{Bucket: "audit_seen", Write: true}}}},
		{name: "requests", in: `{"stage":"enrich","consumes":["admitted"],"produces":["enriched"],"requests":["svc.lookup.*"]}`,
			want: pipeline.Contract{Stage: "enrich", Consumes: []string{"admitted"}, Produces: []string{"enriched"}, Requests: []string{"svc.lookup.*"}}},
		{name: "misspelt field", in: `{"stage":"audit","consume":["completed"]}`, err: "unknown field"},
		{name: "trailing data", in: `{"stage":"audit"} {"stage":"other"}`, err: "after the JSON object"},
		{name: "not JSON", in: `stage: audit`, err: "contract"},
		{name: "no stage", in: `{"consumes":["completed"]}`, err: "stage"},
		{name: "bad event", in: `{"stage":"audit","consumes":["completed.>"]}`, err: "bad event"},
		{name: "bad bucket", in: `{"stage":"audit","kv":[{"bucket":"a b"}]}`, err: "bad bucket"},
		{name: "bad subject", in: `{"stage":"audit","requests":["a..b"]}`, err: "bad subject"},
		{name: "wildcard inside a token", in: `{"stage":"audit","subscribes":["a.b*"]}`, err: "bad subject"},
		{name: "full wildcard not last", in: `{"stage":"audit","requests":["a.>.b"]}`, err: "bad subject"},
		{name: "every subject", in: `{"stage":"audit","requests":[">"]}`, err: "not for a contract file"},
		{name: "first token wildcard", in: `{"stage":"audit","subscribes":["*.turn.>"]}`, err: "not for a contract file"},
		{name: "JetStream API", in: `{"stage":"audit","requests":["$JS.API.STREAM.DELETE.AGENTBUS_TURNS"]}`, err: "not for a contract file"},
		{name: "KV subjects", in: `{"stage":"audit","requests":["$KV.agentbus_apikeys.>"]}`, err: "not for a contract file"},
		{name: "another identity's inbox", in: `{"stage":"audit","subscribes":["_INBOX_ingest.>"]}`, err: "not for a contract file"},
		{name: "response ttl has no JSON form", in: `{"stage":"audit","ResponseTTL":5}`, err: "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pipeline.ParseContract([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Stage != tc.want.Stage || !slices.Equal(got.Consumes, tc.want.Consumes) || !slices.Equal(got.Produces, tc.want.Produces) ||
				!slices.Equal(got.KV, tc.want.KV) || !slices.Equal(got.Requests, tc.want.Requests) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A parsed contract grants what it says: its consumers and nothing of
// another stage's.
func TestParsedContractGrant(t *testing.T) {
	c, err := pipeline.ParseContract([]byte(`{"stage":"audit","consumes":["completed"]}`))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Grant("audit-1")
	pub := strings.Join(g.Pub, " ")
	if !strings.Contains(pub, pipeline.DurableName("audit", messages.EventCompleted)) {
		t.Fatalf("no ack/next on its own consumer: %s", pub)
	}
	for _, forbidden := range []string{messages.Subject(messages.EventReceived, "*"), "agentbus.turn.>", "$JS.API.STREAM.DELETE"} {
		if slices.Contains(g.Pub, forbidden) {
			t.Fatalf("granted %s: %s", forbidden, pub)
		}
	}
}

func FuzzParseContract(f *testing.F) {
	f.Add([]byte(`{"stage":"audit","consumes":["completed"],"kv":[{"bucket":"b","write":true}],"requests":["a.*"]}`))
	f.Add([]byte(`{"stage":"x","subscribes":["a.>"],"services":["svc"],"many_responses":true}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := pipeline.ParseContract(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed an invalid contract: %v", err)
		}
		_ = c.Grant("fuzz")
	})
}
