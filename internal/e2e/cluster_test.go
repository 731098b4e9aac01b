package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// node is one server of an in-process 3-node JetStream cluster.
type node struct {
	name        string
	port, cport int
	dir         string
	srv         *server.Server
	routes      []*url.URL
	authority   *natsauth.Authority
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (n *node) start(t *testing.T) {
	t.Helper()
	o := &server.Options{ServerName: n.name, Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "agentbus", Host: "127.0.0.1", Port: n.cport}, Routes: n.routes, MaxPayload: pipeline.MaxPayload, MaxControlLine: pipeline.MaxControlLine}
	if err := n.authority.ConfigureServer(o); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(45 * time.Second) {
		t.Fatalf("%s not ready", n.name)
	}
	n.srv = s
}

func (n *node) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// countingModel answers every prompt (after a short delay) and counts its
// calls per prompt.
type countingModel struct {
	delay time.Duration // default 20ms
	mu    sync.Mutex
	calls map[string]int
}

func (m *countingModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []messages.Message `json:"messages"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	last := req.Messages[len(req.Messages)-1].Content
	m.mu.Lock()
	m.calls[last]++
	m.mu.Unlock()
	d := m.delay
	if d == 0 {
		d = 20 * time.Millisecond
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(map[string]any{"id": "x", "object": "chat.completion", "model": "count-1",
		"choices": []map[string]any{{"index": 0, "message": map[string]string{"role": "assistant", "content": "answer to " + last}, "finish_reason": "stop"}},
		"usage":   map[string]int{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
	_, _ = w.Write(b)
}

// All five stages start at once against a fresh, authenticated 3-node
// JetStream cluster with --replicas 3; turns keep flowing while the server
// leading the turn stream, then the one leading the llm step records, is
// stopped: every turn completes exactly once, is stored once, and no step
// is paid twice.
func TestClusterFailoverExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	authority, err := natsauth.LoadOrCreate(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = &node{name: fmt.Sprintf("n%d", i+1), port: freePort(t), cport: freePort(t), dir: t.TempDir(), authority: authority}
	}
	for _, n := range nodes {
		for _, o := range nodes {
			n.routes = append(n.routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(o.cport)})
		}
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.start(t) }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
		}
	})
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(n.port))
	}
	natsURL := strings.Join(urls, ",")

	model := &countingModel{calls: map[string]int{}}
	ms := httptest.NewServer(model)
	t.Cleanup(ms.Close)
	providers := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(providers, []byte(fmt.Sprintf(`{"providers":[{"name":"count","kind":"local","base_url":%q,"model":"count-1"}],"retry":{"max_attempts":1}}`, ms.URL+"/v1")), 0o600); err != nil {
		t.Fatal(err)
	}

	// Every stage at once, each its own process-like System with its own
	// credential, as separate binaries would start.
	systems := map[string]*app.System{}
	var mu sync.Mutex
	for _, stage := range app.AllStages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := app.DefaultOptions()
			o.Pipeline.NATSURL = natsURL
			o.Pipeline.Name = "agentbus-" + stage
			o.Pipeline.Streams.Replicas = 3
			o.Pipeline.Streams.MaxBytes = 256 << 20
			o.Pipeline.Streams.DLQMaxBytes = 32 << 20
			o.Pipeline.Consumer.AckWait = 5 * time.Second
			o.Stages = []string{stage}
			o.DataDir = t.TempDir()
			o.HTTPAddr = "127.0.0.1:0"
			o.Getenv = func(string) string { return "" }
			o.Tools.Remote = false
			o.ProvidersFile = providers
			o.Limits = app.LimitsFrom(0, 0, 0)
			o.NATSCreds = apptest.AuthorityCreds(t, authority, stage, stage, app.GrantOptions{})
			sys, err := app.Start(context.Background(), o, testutil.Logger(t))
			if err != nil {
				t.Errorf("start %s: %v", stage, err)
				return
			}
			t.Cleanup(sys.Close)
			mu.Lock()
			systems[stage] = sys
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	opCreds := apptest.AuthorityCreds(t, authority, app.RoleOperator, "cluster-test", app.GrantOptions{})
	nc, err := nats.Connect(natsURL, nats.UserCredentials(opCreds), nats.CustomInboxPrefix(pipeline.InboxPrefix("cluster-test")), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithDefaultTimeout(10*time.Second))
	keysKV, err := js.KeyValue(context.Background(), app.KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Issued with the operator's credential (ingest may only read keys).
	key, _, err := apikey.Issue(context.Background(), apikv.New(keysKV), "cluster", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	ingestAddr := systems[app.StageIngest].HTTPAddr

	// Clients send turns over HTTP with an Idempotency-Key each and
	// retry with the same key until they get an answer.
	const n = 30
	results := make([]string, n)
	send := func(i int) {
		text := fmt.Sprintf("cluster question %02d", i)
		body := fmt.Sprintf(`{"model":"count-1","messages":[{"role":"user","content":%q}]}`, text)
		for attempt := 0; attempt < 20; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, "http://"+ingestAddr+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("cq-%02d", i))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				var out struct {
					Choices []struct{ Message messages.Message } `json:"choices"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == 200 && len(out.Choices) == 1 {
					results[i] = out.Choices[0].Message.Content + "|" + resp.Header.Get("X-Request-Id")
					return
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	leader := func(stream string) *node {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			info, err := testutil.StreamInfo(js, stream)
			if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				for _, nd := range nodes {
					if nd.name == info.Cluster.Leader && nd.srv != nil {
						return nd
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no leader of %s", stream)
		return nil
	}
	var cw sync.WaitGroup
	for i := range n {
		cw.Add(1)
		go func() { defer cw.Done(); send(i) }()
		if i == n/3 {
			// Stop the turn stream's leader, then bring it back.
			l := leader(messages.StreamTurns)
			t.Logf("stopping %s (leader of %s)", l.name, messages.StreamTurns)
			l.stop()
			time.Sleep(300 * time.Millisecond)
			l.start(t)
		}
		if i == 2*n/3 {
			l := leader("KV_agentbus_llm_results")
			t.Logf("stopping %s (leader of the llm step records)", l.name)
			l.stop()
			defer l.start(t)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cw.Wait()
	for i, r := range results {
		if r == "" {
			t.Errorf("turn %d got no answer", i)
		} else if !strings.HasPrefix(r, fmt.Sprintf("answer to cluster question %02d|", i)) {
			t.Errorf("turn %d: %s", i, r)
		}
	}
	// Exactly once: one completed event per turn, one provider call per
	// question.
	for i, r := range results {
		if r == "" {
			continue
		}
		rid := r[strings.LastIndex(r, "|")+1:]
		subj := messages.Subject(messages.EventCompleted, rid)
		// A completed event reaches the waiting client on core NATS as
		// it is published; when the stream's store of it failed (its
		// leader was stopped), persist's message is redelivered and the
		// event published again, after the client has its answer (the
		// turn is committed in SQLite first). Wait for it.
		var count uint64
		for deadline := time.Now().Add(60 * time.Second); ; {
			info, err := testutil.StreamInfo(js, messages.StreamTurns, subj)
			if err != nil {
				t.Fatal(err)
			}
			if count = info.State.Subjects[subj]; count > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if count != 1 {
			t.Errorf("turn %d: %d completed events", i, count)
		}
	}
	model.mu.Lock()
	defer model.mu.Unlock()
	for i := range n {
		if c := model.calls[fmt.Sprintf("cluster question %02d", i)]; c != 1 {
			t.Errorf("question %d: %d provider calls", i, c)
		}
	}
}
