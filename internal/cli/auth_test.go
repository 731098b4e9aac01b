package cli_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/apptest"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The README's commands, unchanged, against a system started on a fresh
// data directory: the CLI finds the operator credential in --data (here
// through AGENTBUS_DATA, as `go run ./cmd/agentbus` in the same directory
// finds ./data) without any flag about credentials.
func TestReadmeCommandsFindTheOperatorCredential(t *testing.T) {
	sys := apptest.Start(t, nil)
	if st, err := os.Stat(app.OperatorCreds(sys.DataDir)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("operator credential: %v %v", st, err)
	}
	for _, f := range []string{"operator.nk", "system.nk", "account.nk"} {
		if st, err := os.Stat(filepath.Join(app.AuthDir(sys.DataDir), f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	env := map[string]string{"AGENTBUS_DATA": sys.DataDir, "AGENTBUS_NATS": sys.Runtime.URL()}
	runEnv := func(args ...string) (int, string, string) {
		return runWith(t, env, args...)
	}
	if code, out, errOut := runEnv("chat", "What is 17*23?"); code != 0 || !strings.Contains(out, "391") {
		t.Fatalf("chat: %d %q %q", code, out, errOut)
	}
	code, key, errOut := runEnv("keys", "create", "--user", "alice")
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(key), "ab-") {
		t.Fatalf("keys create: %d %q %q", code, key, errOut)
	}
	// The key works over the NATS entry too (chat --api-key).
	if code, out, errOut := runEnv("chat", "--api-key", strings.TrimSpace(key), "What is 2+2?"); code != 0 || !strings.Contains(out, "4") {
		t.Fatalf("chat --api-key: %d %q %q", code, out, errOut)
	}
	// And over HTTP, which (like OpenAI's API) needs a model: without
	// --model the CLI takes the first one /v1/models lists.
	if code, out, errOut := runEnv("chat", "--http-url", "http://"+sys.HTTPAddr, "--api-key", strings.TrimSpace(key), "What is 3+3?"); code != 0 || !strings.Contains(out, "6") {
		t.Fatalf("chat --http-url: %d %q %q", code, out, errOut)
	}
	// Without the credential nothing connects.
	code, _, errOut = runWith(t, map[string]string{"AGENTBUS_DATA": t.TempDir(), "AGENTBUS_NATS": sys.Runtime.URL()}, "keys", "list")
	if code == 0 || !strings.Contains(errOut, "Authorization") {
		t.Fatalf("keys list without a credential: %d %q", code, errOut)
	}
}

// `agentbus nats creds` issues a credential that works at once (no server
// change), with exactly its role's rights; `nats config` writes a trust
// configuration the server's parser accepts.
func TestNatsCredsAndConfig(t *testing.T) {
	sys := apptest.Start(t, nil)
	dir := t.TempDir()
	out := filepath.Join(dir, "bot.creds")
	code, _, errOut := run(t, "", "nats", "creds", "--data", sys.DataDir, "--role", "client", "--name", "bot", "--out", out)
	if code != 0 || !strings.Contains(errOut, "_INBOX_bot") {
		t.Fatalf("nats creds: %d %q", code, errOut)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v %v", st, err)
	}
	co, err := pipeline.CredsFile(out).ConnectOptions("")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(sys.Runtime.URL(), co...)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if code, _, errOut := run(t, "", "nats", "creds", "--data", sys.DataDir, "--role", "root", "--name", "x"); code != 2 || !strings.Contains(errOut, "unknown role") {
		t.Fatalf("unknown role: %d %q", code, errOut)
	}
	code, conf, _ := run(t, "", "nats", "config", "--data", sys.DataDir)
	if code != 0 || !strings.Contains(conf, "resolver_preload") {
		t.Fatalf("nats config: %d %s", code, conf)
	}
	for _, f := range []string{"operator.nk", "system.nk", "account.nk"} {
		seed, err := os.ReadFile(filepath.Join(app.AuthDir(sys.DataDir), f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(conf, strings.TrimSpace(string(seed))) {
			t.Fatalf("the server configuration contains the seed of %s", f)
		}
	}
	confFile := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := server.ProcessConfigFile(confFile); err != nil || len(o.TrustedOperators) != 1 {
		t.Fatalf("the server does not accept the configuration: %v", err)
	}
	code, perms, _ := run(t, "", "nats", "permissions", "--role", "client")
	if code != 0 || !strings.Contains(perms, "agentbus.ingest.chat") {
		t.Fatalf("permissions: %s", perms)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentbus-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// With --nats-tls-cert/--nats-tls-key the embedded server's client port
// speaks TLS only; the CLI connects with --nats-ca (and its credential),
// a plain-text client is refused, and the in-process stages still work.
func TestEmbeddedServerTLS(t *testing.T) {
	cert, key := writeCert(t)
	sys := apptest.Start(t, func(o *app.Options) {
		o.Pipeline.Embedded.TLSCert, o.Pipeline.Embedded.TLSKey = cert, key
	})
	url := strings.Replace(sys.Runtime.URL(), "nats://", "tls://", 1)
	creds := app.OperatorCreds(sys.DataDir)
	if code, out, errOut := run(t, "", "chat", "--nats", url, "--nats-creds", creds, "--nats-ca", cert, "What is 17*23?"); code != 0 || !strings.Contains(out, "391") {
		t.Fatalf("chat over TLS: %d %q %q", code, out, errOut)
	}
	co, err := pipeline.CredsFile(creds).ConnectOptions("")
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(sys.Runtime.URL(), append(co, nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("a client without TLS was accepted")
	}
}

// The embedded server refuses to listen beyond loopback without
// authentication.
func TestNoAuthOnlyOnLoopback(t *testing.T) {
	o := app.DefaultOptions()
	o.DataDir = t.TempDir()
	o.NATSAuth = false
	o.Pipeline.Embedded.Listen = "0.0.0.0:-1"
	o.HTTPAddr = "127.0.0.1:0"
	o.Getenv = func(string) string { return "" }
	_, err := app.Start(context.Background(), o, nil)
	if err == nil || !strings.Contains(err.Error(), "without authentication") {
		t.Fatalf("want a refusal, got %v", err)
	}
}

// A second `agentbus serve` on the data directory of a running one exits
// at once, non-zero, with the reason.
func TestSecondServeOnTheSameDataDirFails(t *testing.T) {
	sys := apptest.Start(t, nil)
	done := make(chan struct{})
	var code int
	var errOut string
	go func() {
		defer close(done)
		code, _, errOut = run(t, "", "serve", "--data", sys.DataDir, "--nats-listen", "127.0.0.1:-1", "--http", "127.0.0.1:0")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the second serve did not exit")
	}
	if code == 0 || !strings.Contains(errOut, "in use by another agentbus process") || !strings.Contains(errOut, "pid") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
}

// `nats creds --contract` issues a stage of the operator's own exactly the
// permissions its contract declares; `nats permissions --contract` shows
// them; a misspelt or built-in contract is refused.
func TestNatsCredsFromContract(t *testing.T) {
	sys := apptest.Start(t, nil)
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	contract := write("audit.json", `{"stage":"audit","consumes":["completed"]}`)
	out := filepath.Join(dir, "audit.creds")
	code, _, errOut := run(t, "", "nats", "creds", "--data", sys.DataDir, "--contract", contract, "--name", "audit-1", "--out", out)
	if code != 0 || !strings.Contains(errOut, "role audit") {
		t.Fatalf("nats creds --contract: %d %q", code, errOut)
	}
	co, err := pipeline.CredsFile(out).ConnectOptions("")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	nc, err := nats.Connect(sys.Runtime.URL(), append(co, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// It may fetch from its own consumer, and not publish a turn event.
	if err := nc.Publish(messages.Subject(messages.EventReceived, "forged"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("want a permission violation, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the audit identity published a received event")
	}

	code, perms, _ := run(t, "", "nats", "permissions", "--contract", contract)
	if code != 0 || !strings.Contains(perms, "agentbus-audit-completed") || strings.Contains(perms, "turn.received") {
		t.Fatalf("nats permissions --contract: %d\n%s", code, perms)
	}
	for name, body := range map[string]string{
		"misspelt.json": `{"stage":"audit","consume":["completed"]}`,
		"builtin.json":  `{"stage":"llm","consumes":["completed"]}`,
	} {
		if code, _, errOut := run(t, "", "nats", "creds", "--data", sys.DataDir, "--contract", write(name, body), "--name", "x"); code != 2 {
			t.Fatalf("%s: %d %q", name, code, errOut)
		}
	}
	if code, _, _ := run(t, "", "nats", "creds", "--data", sys.DataDir, "--contract", contract, "--role", "client", "--name", "x"); code != 2 {
		t.Fatal("--role and --contract together were accepted")
	}
}
