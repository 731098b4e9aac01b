package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kill -9 of an llm replica with turns in flight, every process a binary
// with its own credential and the default timeouts (ack wait 30s): every
// client gets either its answer or a 504 whose Idempotency-Key retry
// returns the turn's real outcome; a turn that ended at its deadline is
// never stored afterwards; no question is paid twice.
func TestKill9LLMClientsGetAnswerOrTheirOutcome(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stage binaries; waits one ack wait (30s)")
	}
	build(t)
	auth, err := natsauth.LoadOrCreate(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.NATSServerWith(t, t.TempDir(), -1, auth.ConfigureServer)
	url := srv.ClientURL()
	model := &countingModel{calls: map[string]int{}, delay: 3 * time.Second}
	ms := httptest.NewServer(model)
	t.Cleanup(ms.Close)
	providers := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(providers, []byte(fmt.Sprintf(`{"providers":[{"name":"count","kind":"local","base_url":%q,"model":"count-1","timeout":"60s"}],"retry":{"max_attempts":1}}`, ms.URL+"/v1")), 0o600); err != nil {
		t.Fatal(err)
	}
	common := func(stage string, extra ...string) []string {
		return append([]string{"--nats", url, "--nats-creds", credsFile(t, auth, stage, stage), "--data", t.TempDir(),
			"--log-format", "json", "--log-level", "warn", "--user-rpm", "0", "--user-tpm", "0"}, extra...)
	}
	httpPort := freePort(t)
	startArgs(t, "ingest", common("ingest", "--http", "127.0.0.1:"+strconv.Itoa(httpPort)))
	startArgs(t, "guard", common("guard"))
	startArgs(t, "toolexec", common("toolexec"))
	startArgs(t, "persist", common("persist"))
	llm1 := startArgs(t, "llm", common("llm", "--providers", providers))
	startArgs(t, "llm", common("llm", "--providers", providers))

	opCreds := credsFile(t, auth, app.RoleOperator, "kill-test")
	nc, err := nats.Connect(url, nats.UserCredentials(opCreds), nats.CustomInboxPrefix(pipeline.InboxPrefix("kill-test")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	base := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && instances(nc, "llm") == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the separate processes did not become ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	js, _ := jetstream.New(nc)
	keysKV, err := js.KeyValue(context.Background(), app.KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := apikey.Issue(context.Background(), apikv.New(keysKV), "killtest", 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		status int
		code   string
		rid    string
		text   string
	}
	ask := func(i int, timeout string) result {
		body := fmt.Sprintf(`{"model":"count-1","messages":[{"role":"user","content":"kill question %02d"}]}`, i)
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("kill-%02d", i))
		if timeout != "" {
			req.Header.Set("X-Request-Timeout", timeout)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return result{status: -1, code: err.Error()}
		}
		defer resp.Body.Close()
		var out struct {
			Choices []struct{ Message messages.Message } `json:"choices"`
			Error   *struct{ Code string }               `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		r := result{status: resp.StatusCode, rid: resp.Header.Get("X-Request-Id")}
		if out.Error != nil {
			r.code = out.Error.Code
		}
		if len(out.Choices) > 0 {
			r.text = out.Choices[0].Message.Content
		}
		return r
	}
	// Half the clients wait the default 120s, half give their turn 8s.
	const n = 12
	first := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		timeout := ""
		if i%2 == 1 {
			timeout = "8"
		}
		wg.Add(1)
		go func() { defer wg.Done(); first[i] = ask(i, timeout) }()
	}
	// Kill an llm replica while the (3s) model calls are in flight.
	for {
		model.mu.Lock()
		inFlight := len(model.calls)
		model.mu.Unlock()
		if inFlight >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := llm1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	answered, timedOut := 0, 0
	for i, r := range first {
		want := fmt.Sprintf("answer to kill question %02d", i)
		switch {
		case r.status == 200 && r.text == want:
			answered++
		case r.status == 504:
			timedOut++
			// The retry with the same key gets the turn's real outcome.
			again := ask(i, "")
			if again.rid != r.rid || again.status != 504 || again.code != messages.CodeDeadlineExceeded {
				t.Errorf("client %d: retry got %+v, first %+v", i, again, r)
			}
		default:
			t.Errorf("client %d: %+v", i, r)
		}
	}
	// Let everything settle (the killed replica's messages are redelivered
	// after the 30s ack wait), then check the stream and the provider.
	settleBy := time.Now().Add(90 * time.Second)
	for _, d := range []string{"agentbus-llm-admitted", "agentbus-persist-generated"} {
		for {
			info, err := testutil.ConsumerInfo(js, messages.StreamTurns, d)
			if err == nil && info.NumAckPending == 0 && info.NumPending == 0 {
				break
			}
			if time.Now().After(settleBy) {
				t.Fatalf("%s did not settle: %+v %v", d, info, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i, r := range first {
		completed := messages.Subject(messages.EventCompleted, r.rid)
		info, err := testutil.StreamInfo(js, messages.StreamTurns, "agentbus.turn.*."+r.rid)
		if err != nil {
			t.Fatal(err)
		}
		terminal := info.State.Subjects[completed] + info.State.Subjects[messages.Subject(messages.EventFailed, r.rid)]
		switch {
		case r.status == 200 && (info.State.Subjects[completed] != 1 || terminal != 1):
			t.Errorf("client %d answered, but the stream has %v", i, info.State.Subjects)
		case r.status == 504 && info.State.Subjects[completed] != 0:
			t.Errorf("client %d timed out, but its turn completed later: %v", i, info.State.Subjects)
		}
	}
	// A call the killed replica had in flight was never recorded, so its
	// step runs again on the other replica: at most twice.
	model.mu.Lock()
	defer model.mu.Unlock()
	calls := 0
	for q, c := range model.calls {
		calls += c
		if c > 2 {
			t.Errorf("%q: %d provider calls", q, c)
		}
	}
	t.Logf("sent %d: %d answered, %d timed out (their retry returned the outcome); %d provider calls for %d questions", n, answered, timedOut, calls, len(model.calls))
}
