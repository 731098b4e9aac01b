package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentbus-e2e-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Once
var buildErr error

// build compiles the stage binaries once per test run.
func build(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/ingest", "./cmd/guard", "./cmd/llm", "./cmd/toolexec", "./cmd/persist")
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

func start(t *testing.T, stage, url, data string, extra ...string) *proc {
	t.Helper()
	return startArgs(t, stage, append([]string{"--nats", url, "--data", data, "--log-format", "json", "--log-level", "warn",
		"--handler-timeout", "1s", "--ack-wait", "4s", "--llm-timeout", "1s"}, extra...))
}

// startArgs starts a stage binary with exactly these flags.
func startArgs(t *testing.T, stage string, args []string) *proc {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), stage+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, stage), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: stage, cmd: cmd, log: logf}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- %s log:\n%s", stage, b)
		}
	})
	return p
}

// credsFile issues a credential for name in role and writes it to a file.
func credsFile(t *testing.T, auth *natsauth.Authority, role, name string) string {
	t.Helper()
	g, err := app.Grant(role, name, app.GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.Creds(name, g, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// instances counts the running instances of a stage (health scatter).
func instances(nc *nats.Conn, stage string) int {
	inbox := nc.NewRespInbox()
	sub, _ := nc.SubscribeSync(inbox)
	defer sub.Unsubscribe()
	_ = nc.PublishRequest(pipeline.HealthSubject(stage)+".live", inbox, nil)
	n := 0
	for {
		if _, err := sub.NextMsg(200 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

func TestReplicasSurviveKill9ExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stage binaries")
	}
	build(t)
	// The server trusts the authority; every process has its own
	// credential file (the two llm replicas share one identity).
	auth, err := natsauth.LoadOrCreate(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.NATSServerWith(t, t.TempDir(), -1, auth.ConfigureServer)
	url := srv.ClientURL()
	data := t.TempDir()
	creds := func(role string) string { return credsFile(t, auth, role, role) }
	start(t, "guard", url, data, "--user-rpm", "0", "--user-tpm", "0", "--nats-creds", creds("guard"))
	start(t, "toolexec", url, data, "--nats-creds", creds("toolexec"))
	start(t, "persist", url, data, "--nats-creds", creds("persist"))
	llmCreds := creds("llm")
	llm1 := start(t, "llm", url, data, "--nats-creds", llmCreds)
	start(t, "llm", url, data, "--nats-creds", llmCreds)

	nc, err := nats.Connect(url, nats.UserCredentials(credsFile(t, auth, app.RoleOperator, "e2e-operator")), nats.CustomInboxPrefix(pipeline.InboxPrefix("e2e-operator")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nats.Connect(url); err == nil {
		t.Fatal("the server accepted an anonymous connection")
	}
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	for _, want := range []struct {
		stage string
		n     int
	}{{"guard", 1}, {"toolexec", 1}, {"persist", 1}, {"llm", 2}} {
		for instances(nc, want.stage) < want.n {
			if time.Now().After(deadline) {
				t.Fatalf("stage %s: fewer than %d instances ready", want.stage, want.n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	const n = 60
	var mu sync.Mutex
	completed := map[string]int{}
	sub, err := nc.Subscribe(messages.EventFilter(messages.EventCompleted), func(m *nats.Msg) {
		_, rid, _ := messages.ParseSubject(m.Subject)
		mu.Lock()
		completed[rid]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := range n {
		rid := fmt.Sprintf("mp%03d", i)
		text := "hello number " + rid
		if i%3 == 0 {
			text = fmt.Sprintf("What is %d*7?", i) // a tool round through toolexec
		}
		b, _ := json.Marshal(messages.Turn{SchemaVersion: 1, RequestID: rid, ConversationID: "conv_" + rid, User: "u", Endpoint: "nats",
			Messages: []messages.Message{{Role: "user", Content: text}}, CreatedAt: time.Now().UTC()})
		m := nats.NewMsg(messages.Subject(messages.EventReceived, rid))
		m.Data = b
		m.Header.Set(nats.MsgIdHdr, messages.MsgID(rid, messages.EventReceived, 0))
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if i == n/3 {
			if err := llm1.cmd.Process.Kill(); err != nil { // kill -9 mid-run
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	wait := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		got := len(completed)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("%d of %d turns completed", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Exactly once: one completed event per turn in the stream, one stored
	// turn per request in the store.
	for i := range n {
		rid := fmt.Sprintf("mp%03d", i)
		subj := messages.Subject(messages.EventCompleted, rid)
		info, err := testutil.StreamInfo(js, messages.StreamTurns, subj)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Subjects[subj] != 1 {
			t.Fatalf("%s: %d completed events in the stream", rid, info.State.Subjects[subj])
		}
		var turns []json.RawMessage
		if err := (&persist.Client{NC: nc}).Call(context.Background(), persist.SubjectTurns, persist.HistoryRequest{ConversationID: "conv_" + rid}, &turns); err != nil {
			t.Fatal(err)
		}
		if len(turns) != 1 {
			t.Fatalf("%s: %d stored turns", rid, len(turns))
		}
	}
	dlq, _ := testutil.StreamInfo(js, messages.StreamDLQ)
	if dlq.State.Msgs != 0 {
		t.Fatalf("%d dead letters", dlq.State.Msgs)
	}
}
