package app_test

import (
	"encoding/json"
	"errors"
	"fmt"
	cachekv "github.com/agentbus/agentbus/internal/cache/kvstore"
	"github.com/nats-io/nkeys"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/cli"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// denied waits for the server's permission error about subject on errs.
func denied(t *testing.T, errs <-chan error, what, subject string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) &&
				strings.Contains(err.Error(), what) {
				return
			}
		case <-timeout:
			t.Fatalf("no permission violation for %s %q", what, subject)
		}
	}
}

// pubDenied publishes to subject and expects a permission violation.
func pubDenied(t *testing.T, nc *nats.Conn, errs <-chan error, subject string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(`{"forged":true}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	denied(t, errs, "Publish", subject)
}

// subDenied subscribes to subject and expects a permission violation.
func subDenied(t *testing.T, nc *nats.Conn, errs <-chan error, subject string) {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = nc.Flush()
	denied(t, errs, "Subscription", subject)
}

// The attacks of issue 10, each as it was tried: every one fails with a
// NATS permission error.
func TestZeroTrustAttacksAreRefused(t *testing.T) {
	sys := startSystem(t, nil)

	t.Run("anonymous connection refused", func(t *testing.T) {
		nc, err := nats.Connect(sys.Runtime.URL(), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatal("anonymous connection accepted")
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(err.Error(), "Authorization") {
			t.Fatalf("want an authorization error, got %v", err)
		}
	})

	client, errs := apptest.Conn(t, sys, app.RoleClient, "mallory", app.GrantOptions{})
	t.Run("client cannot forge pipeline events", func(t *testing.T) {
		for _, ev := range []string{messages.EventReceived, messages.EventAdmitted, messages.EventGenerated, messages.EventTooled,
			messages.EventCompleted, messages.EventRejected, messages.EventFailed} {
			pubDenied(t, client, errs, messages.Subject(ev, "req_victim"))
		}
		pubDenied(t, client, errs, messages.StreamSubject("req_victim"))
		pubDenied(t, client, errs, messages.DLQSubject("llm"))
	})
	t.Run("client cannot read the stream, KV or history", func(t *testing.T) {
		for _, s := range []string{
			"$JS.API.STREAM.INFO." + messages.StreamTurns,
			"$JS.API.STREAM.MSG.GET." + messages.StreamTurns,
			"$JS.API.CONSUMER.CREATE." + messages.StreamTurns,
			"$JS.API.CONSUMER.MSG.NEXT." + messages.StreamTurns + "." + pipeline.DurableName("llm", messages.EventAdmitted),
			"$JS.API.DIRECT.GET.KV_" + app.KeysBucket,
			"$KV." + app.KeysBucket + ".minted",
			"$KV." + app.RateLimitBucket + ".victim",
			messages.SubjectHistory,
			messages.SubjectConversations,
			"agentbus.health.persist",
		} {
			pubDenied(t, client, errs, s)
		}
		for _, s := range []string{"agentbus.>", messages.TurnSubjects, "agentbus.stream.*", ">", "_INBOX.>", "$KV.>"} {
			subDenied(t, client, errs, s)
		}
	})
	t.Run("client cannot read another client's inbox", func(t *testing.T) {
		subDenied(t, client, errs, pipeline.InboxPrefix("alice")+".>")
	})
	t.Run("client cannot delete a consumer or a stream", func(t *testing.T) {
		pubDenied(t, client, errs, "$JS.API.CONSUMER.DELETE."+messages.StreamTurns+"."+pipeline.DurableName("guard", messages.EventReceived))
		pubDenied(t, client, errs, "$JS.API.STREAM.DELETE."+messages.StreamTurns)
		pubDenied(t, client, errs, "$JS.API.STREAM.PURGE."+messages.StreamTurns)
	})
	t.Run("client cannot register a tool service", func(t *testing.T) {
		subDenied(t, client, errs, messages.ToolSubject("weather"))
		subDenied(t, client, errs, "$SRV.INFO."+messages.ToolsService)
	})
	t.Run("a tool serves only its own tools", func(t *testing.T) {
		tool, terrs := apptest.Conn(t, sys, app.RoleTool, "weather", app.GrantOptions{})
		ok, err := tool.SubscribeSync(messages.ToolSubject("weather"))
		if err != nil {
			t.Fatal(err)
		}
		defer ok.Unsubscribe()
		subDenied(t, tool, terrs, messages.ToolSubject("calculator"))
		pubDenied(t, tool, terrs, messages.Subject(messages.EventTooled, "req_x"))
	})
}

// Every stage identity is refused outside its contract: it cannot produce
// another stage's events, write buckets it only reads, or manage streams.
func TestStageIdentitiesStayInTheirLane(t *testing.T) {
	sys := startSystem(t, nil)
	cases := []struct {
		role    string
		forbids []string
	}{
		{app.StageIngest, []string{messages.Subject(messages.EventAdmitted, "r"), messages.Subject(messages.EventCompleted, "r"),
			"$KV." + app.KeysBucket + ".k", messages.SubjectHistory, "$JS.API.STREAM.UPDATE." + messages.StreamTurns}},
		{app.StageGuard, []string{messages.Subject(messages.EventGenerated, "r"), messages.Subject(messages.EventCompleted, "r"),
			messages.Subject(messages.EventReceived, "r"), "$KV." + app.KeysBucket + ".k", messages.DLQSubject("llm")}},
		{app.StageLLM, []string{messages.Subject(messages.EventAdmitted, "r"), messages.Subject(messages.EventCompleted, "r"),
			messages.Subject(messages.EventTooled, "r"), messages.ToolSubject("x"), messages.SubjectTurns}},
		{app.StageToolexec, []string{messages.Subject(messages.EventAdmitted, "r"), messages.Subject(messages.EventCompleted, "r"),
			messages.SubjectHistory, "$KV." + app.RateLimitBucket + ".u"}},
		{app.StagePersist, []string{messages.Subject(messages.EventGenerated, "r"), messages.Subject(messages.EventAdmitted, "r"),
			messages.StreamSubject("r"), "$JS.API.CONSUMER.DELETE." + messages.StreamTurns + ".agentbus-llm-admitted"}},
	}
	// The response cache is the llm identity's alone: nobody else may
	// read an answer from it or plant one.
	for i := range cases {
		if cases[i].role != app.StageLLM {
			cases[i].forbids = append(cases[i].forbids, "$KV."+cachekv.Bucket+".k", "$JS.API.DIRECT.GET.KV_"+cachekv.Bucket+".$KV."+cachekv.Bucket+".k")
		}
	}
	for _, tc := range cases {
		t.Run(tc.role, func(t *testing.T) {
			nc, errs := apptest.Conn(t, sys, tc.role, tc.role+"-probe", app.GrantOptions{})
			for _, s := range tc.forbids {
				pubDenied(t, nc, errs, s)
			}
			// Another stage's consumer is not theirs to pull from.
			other := pipeline.DurableName("persist", messages.EventGenerated)
			if tc.role == app.StagePersist {
				other = pipeline.DurableName("guard", messages.EventReceived)
			}
			pubDenied(t, nc, errs, "$JS.API.CONSUMER.MSG.NEXT."+messages.StreamTurns+"."+other)
		})
	}
}

// A client in any language: a client credential and an API key, a request
// to the NATS entry, the answer (and streamed chunks) on its own inbox. The
// identity on the turn is the key's user, whatever the body says.
func TestNATSEntryWithClientCredential(t *testing.T) {
	sys := startSystem(t, nil)
	key := newKey(t, sys, "alice")
	nc, _ := apptest.Conn(t, sys, app.RoleClient, "billing-bot", app.GrantOptions{})

	request := func(t *testing.T, key, body string) *nats.Msg {
		t.Helper()
		m := nats.NewMsg(messages.SubjectChat)
		m.Data = []byte(body)
		if key != "" {
			m.Header.Set("Authorization", "Bearer "+key)
		}
		rep, err := nc.RequestMsg(m, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	t.Run("plain", func(t *testing.T) {
		rep := request(t, key, `{"model":"agentbus-offline","user":"mallory","messages":[{"role":"user","content":"What is 6*7?"}]}`)
		if rep.Header.Get(ingest.HeaderReplyEvent) != "completion" || rep.Header.Get(ingest.HeaderStatus) != "200" {
			t.Fatalf("headers %v body %s", rep.Header, rep.Data)
		}
		var c struct {
			Object  string
			Choices []struct{ Message messages.Message }
		}
		if err := json.Unmarshal(rep.Data, &c); err != nil || c.Object != "chat.completion" || !strings.Contains(c.Choices[0].Message.Content, "42") {
			t.Fatalf("%s (%v)", rep.Data, err)
		}
		// The stored turn belongs to the key's user, not to the body's.
		rid := rep.Header.Get("X-Request-Id")
		op := sys.Runtime.Conn()
		js, _ := jetstream.New(op)
		raw, err := testutil.LastMsg(js, messages.StreamTurns, messages.Subject(messages.EventReceived, rid))
		if err != nil {
			t.Fatal(err)
		}
		var turn messages.Turn
		_ = json.Unmarshal(raw.Data, &turn)
		if turn.User != "alice" || turn.Endpoint != "nats" {
			t.Fatalf("turn user %q endpoint %q", turn.User, turn.Endpoint)
		}
	})
	t.Run("no key is 401", func(t *testing.T) {
		rep := request(t, "", `{"messages":[{"role":"user","content":"hi"}]}`)
		if rep.Header.Get(ingest.HeaderStatus) != "401" || rep.Header.Get(micro.ErrorCodeHeader) != "401" || !strings.Contains(string(rep.Data), "invalid_api_key") {
			t.Fatalf("%v %s", rep.Header, rep.Data)
		}
	})
	t.Run("bad key is 401", func(t *testing.T) {
		rep := request(t, "ab-wrong_000000000000000000", `{"messages":[{"role":"user","content":"hi"}]}`)
		if rep.Header.Get(ingest.HeaderStatus) != "401" {
			t.Fatalf("%v %s", rep.Header, rep.Data)
		}
	})
	t.Run("streaming on its own inbox", func(t *testing.T) {
		inbox := nc.NewRespInbox()
		if !strings.HasPrefix(inbox, pipeline.InboxPrefix("billing-bot")+".") {
			t.Fatalf("inbox %s", inbox)
		}
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		m := nats.NewMsg(messages.SubjectChat)
		m.Reply = inbox
		m.Header.Set("Authorization", "Bearer "+key)
		m.Data = []byte(`{"model":"agentbus-offline","stream":true,"messages":[{"role":"user","content":"tell me a short story about streams"}]}`)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		chunks := 0
		for {
			rep, err := sub.NextMsg(15 * time.Second)
			if err != nil {
				t.Fatalf("after %d chunks: %v", chunks, err)
			}
			ev := rep.Header.Get(ingest.HeaderReplyEvent)
			if ev == "done" {
				break
			}
			if ev != "chunk" {
				t.Fatalf("%s: %s", ev, rep.Data)
			}
			chunks++
			var c struct {
				Object  string
				Choices []struct{ Delta struct{ Content string } }
			}
			if err := json.Unmarshal(rep.Data, &c); err != nil || c.Object != "chat.completion.chunk" {
				t.Fatalf("chunk %s", rep.Data)
			}
			if len(c.Choices) > 0 {
				text.WriteString(c.Choices[0].Delta.Content)
			}
		}
		if chunks < 3 || !strings.Contains(text.String(), "streams") {
			t.Fatalf("%d chunks: %q", chunks, text.String())
		}
	})
	t.Run("the entry is a micro service with health", func(t *testing.T) {
		op := sys.Runtime.Conn()
		rep, err := op.Request(pipeline.HealthSubject("ingest")+".ready", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rep.Data), `"status":"healthy"`) {
			t.Fatalf("%s", rep.Data)
		}
	})
}

// /health tells anyone the status, and the details only to a caller with a
// valid API key.
func TestHealthDetailsNeedAKey(t *testing.T) {
	sys := startSystem(t, nil)
	key := newKey(t, sys, "ops")
	get := func(key string) map[string]any {
		req, _ := http.NewRequest(http.MethodGet, "http://"+sys.HTTPAddr+"/health", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return h
	}
	// Only the status (healthy, or unhealthy when a stage's answer was
	// slower than the health timeout on a loaded machine): no details.
	if h := get(""); len(h) != 1 || h["status"] == nil || h["status"] == "" {
		t.Fatalf("anonymous /health: %v", h)
	}
	if h := get(key); h["stages"] == nil {
		t.Fatalf("with a key: %v", h)
	}
}

// Redrive republishes only what a stage dead-lettered, to the turn subject
// of an event that stage consumes: a forged dead letter naming a KV subject
// (or written on another stage's subject) is refused.
func TestRedriveRefusesForgedDeadLetters(t *testing.T) {
	dl := func(stage, subject string) messages.DeadLetter {
		return messages.DeadLetter{SchemaVersion: 1, Stage: stage, Subject: subject, MsgID: "m", Payload: []byte(`{}`)}
	}
	for _, tc := range []struct {
		dlq string
		dl  messages.DeadLetter
		ok  bool
	}{
		{"agentbus.dlq.llm", dl("llm", "agentbus.turn.admitted.req_1"), true},
		{"agentbus.dlq.guard", dl("guard", "agentbus.turn.received.req_1"), true},
		{"agentbus.dlq.llm", dl("llm", "$KV.agentbus_apikeys.evil"), false},
		{"agentbus.dlq.llm", dl("llm", "$JS.API.STREAM.DELETE.AGENTBUS_TURNS"), false},
		{"agentbus.dlq.llm", dl("llm", "agentbus.turn.completed.req_1"), false},    // llm does not consume completed
		{"agentbus.dlq.guard", dl("llm", "agentbus.turn.admitted.req_1"), false},   // written on guard's subject, claims llm
		{"agentbus.dlq.mallory", dl("mallory", "agentbus.turn.received.r"), false}, // no such stage
		{"agentbus.dlq.llm", dl("llm", "agentbus.turn.admitted.req_1.extra"), false},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.dlq, tc.dl.Subject), func(t *testing.T) {
			_, err := cli.RedriveSubject(tc.dlq, tc.dl)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, cli.ErrRedriveRefused)) {
				t.Fatalf("ok=%v err=%v", tc.ok, err)
			}
		})
	}
}

// Every role's user JWT fits in a CONNECT line of the server's
// max_control_line with room for the rest of CONNECT (name, version,
// signature of the nonce): a role whose contract grows past it would be
// refused at connect.
func TestCredentialsFitTheControlLine(t *testing.T) {
	sys := startSystem(t, nil)
	for _, r := range app.Roles {
		b, err := os.ReadFile(apptest.CredsFile(t, sys, r, r+"-with-a-long-instance-name-0123456789", app.GrantOptions{Tools: []string{"weather", "forecast"}}))
		if err != nil {
			t.Fatal(err)
		}
		jwt, err := nkeys.ParseDecoratedJWT(b)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(jwt) + 1024; n > pipeline.MaxControlLine/2 {
			t.Errorf("role %s: a JWT of %d bytes leaves too little room in a %d-byte control line (keep it under half)", r, len(jwt), pipeline.MaxControlLine)
		}
	}
}
