package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/apikey"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/testutil"
)

// Secrets never reach logs (at debug level), error bodies or health
// output: neither the client's API key nor the provider's key.
func TestSecretsStayOutOfLogsAndOutputs(t *testing.T) {
	f := newFakeOpenAI(t)
	var logs testutil.Buffer
	o := app.DefaultOptions()
	o.DataDir = t.TempDir()
	o.HTTPAddr = "127.0.0.1:0"
	o.Pipeline.Embedded.Listen = "127.0.0.1:-1"
	o.Tools.Remote = false
	withFake(f, t)(&o)
	o.Auth = true
	sys, err := app.Start(context.Background(), o, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	key, _, err := apikey.Issue(context.Background(), sys.Keys, "erin", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const providerKey = "sk-test-0123456789abcdefghij"
	wrongSecret := key[:12] + strings.Repeat("Z", len(key)-12) // right id, wrong secret
	var outputs []string
	for _, k := range []string{key, wrongSecret, "Bearer-less garbage " + providerKey} {
		r := post(t, sys, k, "", chatBody("hello, my key is in the header"))
		outputs = append(outputs, r.raw)
	}
	f.failing.Store(true) // provider errors must not echo the key either
	outputs = append(outputs, post(t, sys, key, "", chatBody("again")).raw)
	for _, k := range []string{"", key} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+sys.HTTPAddr+"/health", nil)
		if k != "" {
			req.Header.Set("Authorization", "Bearer "+k)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		health, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outputs = append(outputs, string(health))
	}
	all := logs.String() + strings.Join(outputs, "\n")
	secretPart := key[12:] // the part after "ab-<id>_"
	secrets := []string{providerKey, secretPart, wrongSecret[12:]}
	// The NATS authority's seeds and the operator credential's seed.
	for _, f := range []string{"operator.nk", "system.nk", "account.nk"} {
		b, err := os.ReadFile(filepath.Join(app.AuthDir(o.DataDir), f))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(b)))
	}
	creds, err := os.ReadFile(app.OperatorCreds(o.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	seed := regexp.MustCompile(`SU[A-Z2-7]{50,}`).FindString(string(creds))
	if seed == "" {
		t.Fatal("no user seed in the operator credential")
	}
	secrets = append(secrets, seed)
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Fatalf("a secret (%s…) appears in logs or outputs", s[:4])
		}
	}
	if !strings.Contains(logs.String(), `"stage"`) {
		t.Fatal("the test saw no stage logs at all")
	}
}
