// Package ops holds the deployment files (NATS server configurations, and
// at the repository root the Dockerfile and docker-compose.yml). Its tests
// check them against the code: the NATS configurations are parsed by the
// server's own parser and started, the compose topology (one process per
// stage, replicas, health checks) is run in-process on a server started
// from ops/nats-server.conf, and every binary, flag and AGENTBUS_* variable
// the files name must exist.
package ops

import (
	"bytes"
	"context"
	"encoding/json"
	cachekv "github.com/agentbus/agentbus/internal/cache/kvstore"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/cli"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/internal/testutil"
	"github.com/agentbus/agentbus/internal/tools"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

const root = ".."

func repoPath(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(repoPath(p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// natsConfigs are every NATS configuration this directory ships.
func natsConfigs(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(repoPath("ops/nats-cluster/*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("want 3 cluster node configs, found %v", files)
	}
	return append([]string{repoPath("ops/nats-server.conf")}, files...)
}

// testAuthority is one NATS authority per test binary: the deployment's
// keys, as `agentbus nats init` creates them.
var testAuthority = sync.OnceValues(func() (*natsauth.Authority, error) {
	dir, err := os.MkdirTemp("", "agentbus-ops-auth-")
	if err != nil {
		return nil, err
	}
	return natsauth.LoadOrCreate(filepath.Join(dir, "auth"))
})

func authority(t testing.TB) *natsauth.Authority {
	t.Helper()
	a, err := testAuthority()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// withAuth copies a configuration into a temp dir next to the auth/auth.conf
// it includes (the trust configuration `agentbus nats init --config`
// writes) and returns the copy's path. text, when not empty, replaces the
// file's contents.
func withAuth(t testing.TB, file, text string) string {
	t.Helper()
	dir := t.TempDir()
	if text == "" {
		text = readFile(t, strings.TrimPrefix(file, root+"/"))
	}
	conf, err := authority(t).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "auth"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth", "auth.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// operatorConn connects to s with an operator credential of the test
// authority.
func operatorConn(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	g, err := app.Grant(app.RoleOperator, "ops-test", app.GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := authority(t).Creds("ops-test", g, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "op.creds")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	co, err := pipeline.CredsFile(p).ConnectOptions("")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), co...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestNATSConfigsParse parses every configuration with the server's parser
// and checks the settings docs/operations.md and the ADR promise.
func TestNATSConfigsParse(t *testing.T) {
	names := map[string]string{}
	for _, f := range natsConfigs(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := server.ProcessConfigFile(f); err == nil || !strings.Contains(err.Error(), "auth.conf") {
				t.Fatalf("without its auth/auth.conf the configuration must not load (no anonymous mode): %v", err)
			}
			o, err := server.ProcessConfigFile(withAuth(t, f, ""))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if len(o.TrustedOperators) != 1 || o.SystemAccount == "" || o.AccountResolver == nil {
				t.Error("the configuration does not run in operator mode (trusted operator, system account, resolver)")
			}
			if !o.JetStream {
				t.Error("JetStream is not enabled")
			}
			if !o.SyncAlways {
				t.Error("sync_interval is not \"always\": acknowledged messages could be lost on power failure")
			}
			if o.StoreDir == "" {
				t.Error("no JetStream store_dir")
			}
			if o.MaxPayload != 1<<20 {
				t.Errorf("max_payload = %d, want 1 MiB (the embedded server's and ingest's limit)", o.MaxPayload)
			}
			if o.MaxConn <= 0 {
				t.Errorf("max_connections = %d, want a positive limit", o.MaxConn)
			}
			if o.JetStreamMaxMemory <= 0 || o.JetStreamMaxStore <= 0 {
				t.Errorf("jetstream limits not set: max_mem %d, max_file %d", o.JetStreamMaxMemory, o.JetStreamMaxStore)
			}
			if o.HTTPPort <= 0 {
				t.Error("no monitoring port (http)")
			}
			if o.Port != 4222 {
				t.Errorf("client port %d, want 4222 (the compose file and the CLI default)", o.Port)
			}
			if o.ServerName == "" {
				t.Error("no server_name")
			} else if prev, dup := names[o.ServerName]; dup {
				t.Errorf("server_name %q also used by %s", o.ServerName, prev)
			}
			names[o.ServerName] = f
			if strings.Contains(f, "nats-cluster") {
				if o.Cluster.Name != "agentbus" || o.Cluster.Port != 6222 {
					t.Errorf("cluster name %q port %d, want agentbus 6222", o.Cluster.Name, o.Cluster.Port)
				}
				var hosts []string
				for _, r := range o.Routes {
					hosts = append(hosts, r.Host)
				}
				sort.Strings(hosts)
				if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(hosts, want) {
					t.Errorf("routes %v, want %v", hosts, want)
				}
			} else if o.Cluster.Port != 0 {
				t.Error("the single-node config must keep its cluster block commented out")
			}
		})
	}
}

// TestNATSConfigClusterBlockParses uncomments the single-node file's
// cluster block and parses the result: the block is ready to use.
func TestNATSConfigClusterBlockParses(t *testing.T) {
	text := readFile(t, "ops/nats-server.conf")
	var out []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "# cluster {" {
			in = true
		}
		if in {
			line = strings.TrimPrefix(trimmed, "#")
			if strings.TrimSpace(line) == "}" {
				in = false
			}
		}
		out = append(out, line)
	}
	if in {
		t.Fatal("commented cluster block is not closed")
	}
	o, err := server.ProcessConfigFile(withAuth(t, repoPath("ops/nats-server.conf"), strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("uncommented cluster block does not parse: %v", err)
	}
	if o.Cluster.Name != "agentbus" || o.Cluster.Port != 6222 || len(o.Routes) != 3 {
		t.Fatalf("uncommented cluster block: name %q port %d routes %d", o.Cluster.Name, o.Cluster.Port, len(o.Routes))
	}
}

// serverFromConfig starts a server from a configuration file with the
// listeners moved to free ports and the store to a temp dir.
func serverFromConfig(t testing.TB, file string, mod func(*server.Options)) *server.Server {
	t.Helper()
	o, err := server.ProcessConfigFile(withAuth(t, file, ""))
	if err != nil {
		t.Fatal(err)
	}
	o.Host, o.Port = "127.0.0.1", -1
	o.HTTPHost, o.HTTPPort = "127.0.0.1", -1
	o.StoreDir = t.TempDir()
	o.NoSigs, o.NoLog = true, true
	if mod != nil {
		mod(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	// A cluster node is ready once its routes and JetStream are: slow on
	// a loaded CI machine.
	if !s.ReadyForConnections(45 * time.Second) {
		t.Fatal("server from " + file + " not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// TestNATSConfigServes starts a server from ops/nats-server.conf and
// checks what a running server reports: JetStream on, fsync before ack,
// the monitoring health endpoint the compose health check uses.
func TestNATSConfigServes(t *testing.T) {
	s := serverFromConfig(t, repoPath("ops/nats-server.conf"), nil)
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	if jc := s.JetStreamConfig(); jc == nil || !jc.SyncAlways {
		t.Fatalf("running server does not sync always: %+v", jc)
	}
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("the server accepted an anonymous connection")
	}
	nc := operatorConn(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), "t.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), "t.big", make([]byte, 1<<20+1)); err == nil {
		t.Fatal("a payload over max_payload was accepted")
	}

	c := composeFile(t)
	u := healthURL(t, c.Services["nats"])
	resp, err := http.Get("http://" + s.MonitorAddr().String() + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("nats health check %s: HTTP %d", u, resp.StatusCode)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNATSClusterForms starts the three cluster node configurations (their
// routes pointed at loopback ports) and replicates an R3 stream: the
// files really form a JetStream cluster.
func TestNATSClusterForms(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	files := natsConfigs(t)[1:]
	ports := map[string]int{}
	for _, f := range files {
		o, err := server.ProcessConfigFile(withAuth(t, f, ""))
		if err != nil {
			t.Fatal(err)
		}
		ports[o.ServerName] = freePort(t)
	}
	var servers []*server.Server
	for _, f := range files {
		servers = append(servers, serverFromConfig(t, f, func(o *server.Options) {
			o.Cluster.Host, o.Cluster.Port = "127.0.0.1", ports[o.ServerName]
			for i, r := range o.Routes {
				name, _, _ := strings.Cut(r.Host, ":")
				p, ok := ports[name]
				if !ok {
					t.Fatalf("%s routes to %s, which is no node's server_name", f, r.Host)
				}
				o.Routes[i] = &url.URL{Scheme: r.Scheme, Host: "127.0.0.1:" + strconv.Itoa(p)}
			}
		}))
	}
	nc := operatorConn(t, servers[0])
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("R3 stream not created within 30s: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for i := range 10 {
		if _, err := js.Publish(context.Background(), "r3."+strconv.Itoa(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for {
		info, err := testutil.StreamInfo(js, "R3")
		if err != nil {
			t.Fatal(err)
		}
		current := 0
		for _, p := range info.Cluster.Replicas {
			if p.Current {
				current++
			}
		}
		if info.State.Msgs == 10 && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 && current == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("R3 stream not replicated: msgs %d leader %q replicas %+v", info.State.Msgs, info.Cluster.Leader, info.Cluster.Replicas)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- docker-compose.yml ---

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []any             `yaml:"volumes"`
	Profiles    []string          `yaml:"profiles"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Build *struct {
		Context string            `yaml:"context"`
		Args    map[string]string `yaml:"args"`
	} `yaml:"build"`
	Deploy struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type compose struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

// mount is one volume entry of a service, short ("src:dst[:ro]") or long
// syntax.
type mount struct {
	Source, Target, Subpath string
	ReadOnly                bool
}

func mounts(t testing.TB, svc composeService) []mount {
	t.Helper()
	var out []mount
	for _, v := range svc.Volumes {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Fatalf("volume %q", v)
			}
			out = append(out, mount{Source: parts[0], Target: parts[1], ReadOnly: len(parts) > 2 && parts[2] == "ro"})
		case map[string]any:
			m := mount{}
			m.Source, _ = v["source"].(string)
			m.Target, _ = v["target"].(string)
			m.ReadOnly, _ = v["read_only"].(bool)
			if vol, ok := v["volume"].(map[string]any); ok {
				m.Subpath, _ = vol["subpath"].(string)
			}
			out = append(out, m)
		default:
			t.Fatalf("volume entry %v", v)
		}
	}
	return out
}

func composeFile(t testing.TB) compose {
	t.Helper()
	var c compose
	if err := yaml.Unmarshal([]byte(readFile(t, "docker-compose.yml")), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// serveFlags returns the flag names `agentbus serve` and the stage binaries
// accept, read from internal/cli/cli.go: the f.str/f.integer/f.boolean/
// f.duration calls in serve and in the add*Flags helpers it calls.
func serveFlags(t testing.TB) map[string]bool {
	t.Helper()
	src := readFile(t, "internal/cli/cli.go")
	body := func(fn string) string {
		i := strings.Index(src, "\nfunc "+fn+"(")
		if i < 0 {
			t.Fatalf("internal/cli/cli.go: no func %s", fn)
		}
		j := strings.Index(src[i+1:], "\n}\n")
		if j < 0 {
			t.Fatalf("internal/cli/cli.go: func %s not closed", fn)
		}
		return src[i : i+1+j]
	}
	serve := body("serve")
	bodies := []string{serve}
	for _, m := range regexp.MustCompile(`\b(add\w*Flags)\(f\)`).FindAllStringSubmatch(serve, -1) {
		bodies = append(bodies, body(m[1]))
	}
	flags := map[string]bool{}
	re := regexp.MustCompile(`\bf\.(?:str|integer|boolean|duration|size)\("([a-z0-9-]+)"`)
	for _, b := range bodies {
		for _, m := range re.FindAllStringSubmatch(b, -1) {
			flags[m[1]] = true
		}
	}
	if len(flags) < 10 || !flags["nats"] || !flags["http"] || !flags["log-level"] {
		t.Fatalf("flag extraction from internal/cli/cli.go looks broken: %v", flags)
	}
	return flags
}

func envName(flag string) string {
	return "AGENTBUS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// cmdBinaries lists the directories under cmd/.
func cmdBinaries(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(repoPath("cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(repoPath("cmd"), e.Name(), "main.go")); e.IsDir() && err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// commandFlags returns the flag names and values of a command line.
func commandFlags(t testing.TB, args []string, isBool map[string]bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Fatalf("command %q: positional argument %q (stage binaries take only flags)", args, a)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasVal && !isBool[name] {
			if i+1 >= len(args) {
				t.Fatalf("command %q: flag %s has no value", args, a)
			}
			i++
			val = args[i]
		}
		out[name] = val
	}
	return out
}

func boolFlags(t testing.TB) map[string]bool {
	src := readFile(t, "internal/cli/cli.go")
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bf\.boolean\("([a-z0-9-]+)"`).FindAllStringSubmatch(src, -1) {
		out[m[1]] = true
	}
	return out
}

var stages = []string{"ingest", "guard", "llm", "toolexec", "persist"}

// TestComposeFile checks the compose topology against the code: each stage
// is its own service built from the Dockerfile for a binary under cmd/,
// every flag and AGENTBUS_* variable is real, replicas, ports, volumes and
// health checks are where docs/operations.md says.
func TestComposeFile(t *testing.T) {
	c := composeFile(t)
	flags := serveFlags(t)
	bools := boolFlags(t)
	bins := cmdBinaries(t)
	// AGENTBUS_* variables the provider configuration reads (not flags).
	providerEnv := map[string]bool{}
	for _, m := range regexp.MustCompile(`Env\w+\s*=\s*"(AGENTBUS_[A-Z_]+)"`).FindAllStringSubmatch(readFile(t, "internal/provider/config.go"), -1) {
		providerEnv[m[1]] = true
	}
	if !slices.Contains(bins, "agentbus") || len(bins) != 6 {
		t.Fatalf("cmd/ binaries: %v", bins)
	}

	nats, ok := c.Services["nats"]
	if !ok {
		t.Fatal("no nats service")
	}
	if !strings.HasPrefix(nats.Image, "nats:2.12") {
		t.Errorf("nats image %q, want nats:2.12*", nats.Image)
	}
	conf := ""
	for _, m := range mounts(t, nats) {
		if m.Source == "./ops/nats-server.conf" {
			conf = m.Target
		}
	}
	if conf == "" || !slices.Contains(nats.Command, conf) {
		t.Errorf("nats service must mount ./ops/nats-server.conf and run with it: volumes %v command %v", nats.Volumes, nats.Command)
	}
	// The auth-init service writes the trust configuration and one
	// credential per role into the auth volume; nats mounts only the
	// trust configuration, where its configuration includes it.
	initSvc, ok := c.Services["auth-init"]
	if !ok || initSvc.Build == nil || initSvc.Build.Args["BIN"] != "agentbus" {
		t.Fatal("want an auth-init service (BIN=agentbus)")
	}
	initArgs := initSvc.Command
	if len(initArgs) < 2 || initArgs[0] != "nats" || initArgs[1] != "init" {
		t.Fatalf("auth-init must run `nats init`: %v", initArgs)
	}
	initFlags := commandFlags(t, initArgs[2:], nil)
	var authVol mount
	for _, m := range mounts(t, initSvc) {
		if m.Target == initFlags["data"] {
			authVol = m
		}
	}
	if _, named := c.Volumes[authVol.Source]; !named {
		t.Fatalf("auth-init --data %q is not on a named volume", initFlags["data"])
	}
	rel := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, authVol.Target), "/") }
	if nats.DependsOn["auth-init"].Condition != "service_completed_successfully" {
		t.Error("nats must wait for auth-init")
	}
	trust := false
	for _, m := range mounts(t, nats) {
		if m.Source == authVol.Source && m.Target == filepath.Dir(conf)+"/auth" && m.ReadOnly &&
			m.Subpath == filepath.Dir(rel(initFlags["config"])) && filepath.Base(initFlags["config"]) == "auth.conf" {
			trust = true
		} else if m.Source == authVol.Source {
			t.Errorf("nats mounts more of the auth volume than the trust configuration: %+v", m)
		}
	}
	if !trust {
		t.Errorf("nats does not mount auth-init's %s at %s/auth/auth.conf (read-only)", initFlags["config"], filepath.Dir(conf))
	}
	o, err := server.ProcessConfigFile(withAuth(t, repoPath("ops/nats-server.conf"), ""))
	if err != nil {
		t.Fatal(err)
	}
	if !mountedVolume(t, c, nats, o.StoreDir) {
		t.Errorf("JetStream store_dir %s is not on a named volume of the nats service (%v)", o.StoreDir, nats.Volumes)
	}

	for _, stage := range stages {
		svc, ok := c.Services[stage]
		if !ok {
			t.Errorf("no %s service", stage)
			continue
		}
		t.Run(stage, func(t *testing.T) {
			if svc.Build == nil || svc.Build.Context != "." {
				t.Fatalf("%s must build from the repository's Dockerfile", stage)
			}
			bin := svc.Build.Args["BIN"]
			if bin != stage || !slices.Contains(bins, bin) {
				t.Fatalf("BIN=%q: want %q, a binary under cmd/", bin, stage)
			}
			got := commandFlags(t, svc.Command, bools)
			for name := range got {
				if !flags[name] {
					t.Errorf("flag --%s is not a flag of %s (internal/cli/cli.go serve)", name, bin)
				}
			}
			if svc.Environment["AGENTBUS_NATS"] != "nats://nats:4222" {
				t.Errorf("AGENTBUS_NATS %q, want nats://nats:4222", svc.Environment["AGENTBUS_NATS"])
			}
			// Its own credential only, read-only, from auth-init's creds dir.
			creds := svc.Environment["AGENTBUS_NATS_CREDS"]
			own := false
			for _, m := range mounts(t, svc) {
				if m.Source != authVol.Source {
					continue
				}
				if m.Subpath != rel(initFlags["creds-dir"])+"/"+stage || !m.ReadOnly || creds != m.Target+"/nats.creds" {
					t.Errorf("auth volume mount %+v: want subpath %s/%s read-only holding AGENTBUS_NATS_CREDS %q", m, rel(initFlags["creds-dir"]), stage, creds)
				}
				own = true
			}
			if !own {
				t.Error("no credential mounted")
			}
			if svc.DependsOn["auth-init"].Condition != "service_completed_successfully" {
				t.Error("must wait for auth-init")
			}
			for k := range svc.Environment {
				if strings.HasPrefix(k, "AGENTBUS_") && !providerEnv[k] && !slices.ContainsFunc(mapsKeys(flags), func(f string) bool { return envName(f) == k }) {
					t.Errorf("environment %s names no flag", k)
				}
			}
			if svc.DependsOn["nats"].Condition != "service_healthy" {
				t.Error("must wait for a healthy nats service")
			}
			if svc.Healthcheck == nil {
				t.Fatal("no health check")
			}
			if stage != "ingest" && !slices.Equal(svc.Healthcheck.Test, []string{"CMD", "/usr/local/bin/entrypoint", "health"}) {
				t.Errorf("health check %v: want the stage binary's `health` (its readiness endpoint, with its credential)", svc.Healthcheck.Test)
			}
		})
	}
	for stage, want := range map[string]int{"guard": 2, "llm": 2, "persist": 1} {
		if r := c.Services[stage].Deploy.Replicas; r == nil || *r != want {
			t.Errorf("%s deploy.replicas = %v, want %d", stage, r, want)
		}
	}
	ing := c.Services["ingest"]
	if got := commandFlags(t, ing.Command, bools)["http"]; got != "0.0.0.0:8080" {
		t.Errorf("ingest --http %q, want 0.0.0.0:8080", got)
	}
	if !slices.Contains(ing.Ports, "8080:8080") {
		t.Errorf("ingest ports %v, want 8080:8080", ing.Ports)
	}
	if u := healthURL(t, ing); u.Port() != "8080" || u.Path != "/health/live" {
		t.Errorf("ingest health check URL %s", u)
	}
	per := c.Services["persist"]
	data := commandFlags(t, per.Command, bools)["data"]
	if data == "" || !mountedVolume(t, c, per, data) {
		t.Errorf("persist --data %q is not on a named volume (%v)", data, per.Volumes)
	}
	cli, ok := c.Services["cli"]
	if !ok || cli.Build == nil || cli.Build.Args["BIN"] != "agentbus" || len(cli.Profiles) == 0 {
		t.Error("want a cli service (BIN=agentbus) behind a profile")
	} else if cli.Environment["AGENTBUS_NATS"] != "nats://nats:4222" {
		t.Error("cli service must point AGENTBUS_NATS at the nats service")
	} else if creds := cli.Environment["AGENTBUS_NATS_CREDS"]; creds != authVol.Target+"/"+rel(initFlags["creds-dir"])+"/operator/nats.creds" {
		t.Errorf("cli AGENTBUS_NATS_CREDS %q: want auth-init's operator credential", creds)
	}
}

func mapsKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// mountedVolume reports whether dir is (under) a named volume of svc.
func mountedVolume(t testing.TB, c compose, svc composeService, dir string) bool {
	for _, m := range mounts(t, svc) {
		if _, named := c.Volumes[m.Source]; named && (dir == m.Target || strings.HasPrefix(dir, strings.TrimSuffix(m.Target, "/")+"/")) {
			return true
		}
	}
	return false
}

var wgetRe = regexp.MustCompile(`^wget -q -O /dev/null (http://\S+)$`)

func healthURL(t testing.TB, svc composeService) *url.URL {
	t.Helper()
	if svc.Healthcheck == nil || len(svc.Healthcheck.Test) != 2 {
		t.Fatal("no health check")
	}
	m := wgetRe.FindStringSubmatch(svc.Healthcheck.Test[1])
	if m == nil {
		t.Fatalf("health check is not a wget: %q", svc.Healthcheck.Test[1])
	}
	u, err := url.Parse(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestComposeTopology runs the compose deployment in-process: auth-init's
// command (the authority, the server's trust configuration, one credential
// per role), a server started from ops/nats-server.conf with that trust
// configuration, each stage as its own app.System with its own credential
// and the compose file's replica counts, every service's health check, and
// a chat turn through the separate ingest process.
func TestComposeTopology(t *testing.T) {
	c := composeFile(t)
	// auth-init, with its paths moved into a temp dir.
	authRoot := t.TempDir()
	initFlags := commandFlags(t, c.Services["auth-init"].Command[2:], nil)
	vol := initFlags["data"]
	local := func(p string) string { return filepath.Join(authRoot, strings.TrimPrefix(p, vol)) }
	args := []string{"nats", "init", "--data", authRoot, "--config", local(initFlags["config"]), "--creds-dir", local(initFlags["creds-dir"])}
	var stderr bytes.Buffer
	if code := cli.Main(cli.Env{Args: args, Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("auth-init: %d %s", code, stderr.String())
	}
	confDir := t.TempDir()
	conf := filepath.Join(confDir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(readFile(t, "ops/nats-server.conf")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(local(initFlags["config"])), filepath.Join(confDir, "auth")); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	o.Host, o.Port = "127.0.0.1", -1
	o.HTTPHost, o.HTTPPort = "127.0.0.1", -1
	o.StoreDir = t.TempDir()
	o.NoSigs, o.NoLog = true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })

	// credsOf is auth-init's credential file of a role.
	credsOf := func(role string) string {
		return filepath.Join(local(initFlags["creds-dir"]), role, "nats.creds")
	}
	// health runs a stage service's health check command (`<stage>
	// health`) with the service's environment, pointed at the test server.
	health := func(stage string) (bool, string) {
		svc := c.Services[stage]
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = v
		}
		env["AGENTBUS_NATS"] = s.ClientURL()
		env["AGENTBUS_NATS_CREDS"] = credsOf(stage)
		env["AGENTBUS_HEALTH_TIMEOUT"] = "500ms"
		var out, errb bytes.Buffer
		code := cli.RunStage(stage, cli.Env{Args: svc.Healthcheck.Test[2:], Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
		return code == 0, out.String() + errb.String()
	}

	// Before any stage runs, every stage health check fails.
	for _, stage := range stages[1:] {
		if ok, out := health(stage); ok {
			t.Errorf("%s health check passes with no %s running: %q", stage, stage, out)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	start := func(stage string) *app.System {
		o := app.DefaultOptions()
		o.Pipeline.NATSURL = s.ClientURL()
		o.Pipeline.Name = "agentbus-" + stage
		o.Stages = []string{stage}
		o.DataDir = t.TempDir()
		o.HTTPAddr = "127.0.0.1:0"
		o.Getenv = func(string) string { return "" }
		o.Tools.Remote = false
		o.NATSCreds = credsOf(stage)
		sys, err := app.Start(context.Background(), o, testutil.Logger(t))
		if err != nil {
			t.Errorf("start %s: %v", stage, err)
			return nil
		}
		t.Cleanup(sys.Close)
		return sys
	}
	var ingest *app.System
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, stage := range stages {
		n := 1
		if r := c.Services[stage].Deploy.Replicas; r != nil {
			n = *r
		}
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sys := start(stage)
				if stage == "ingest" {
					mu.Lock()
					ingest = sys
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	for _, stage := range stages[1:] {
		if ok, out := health(stage); !ok {
			t.Errorf("%s health check fails with %s running: %q", stage, stage, out)
		}
	}
	u := healthURL(t, c.Services["ingest"])
	resp, err := http.Get("http://" + ingest.HTTPAddr + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("ingest health check: HTTP %d", resp.StatusCode)
	}

	// Readiness aggregates every stage process.
	var ready struct {
		Status string            `json:"status"`
		Stages map[string]string `json:"stages"`
	}
	getJSON(t, "http://"+ingest.HTTPAddr+"/health/ready", &ready)
	if ready.Status != pipeline.Healthy || len(ready.Stages) != 4 {
		t.Errorf("/health/ready: %+v", ready)
	}

	// A key issued with the cli service's (operator) credential; a turn
	// crosses the separate processes and comes back persisted.
	var keyOut, keyErr bytes.Buffer
	env := map[string]string{"AGENTBUS_NATS": s.ClientURL(), "AGENTBUS_NATS_CREDS": credsOf("operator")}
	if code := cli.Main(cli.Env{Args: []string{"keys", "create", "--user", "ops"}, Stdout: &keyOut, Stderr: &keyErr, Getenv: func(k string) string { return env[k] }}); code != 0 {
		t.Fatalf("keys create: %s", keyErr.String())
	}
	key := strings.TrimSpace(keyOut.String())
	body := `{"model":"agentbus-offline","messages":[{"role":"user","content":"hello from the compose topology"}]}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+ingest.HTTPAddr+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"choices"`) {
		t.Fatalf("chat through the topology: HTTP %d %s", resp.StatusCode, raw)
	}

	// The streams were created with the server's file storage.
	nc, err := nats.Connect(s.ClientURL(), nats.UserCredentials(credsOf("operator")), nats.CustomInboxPrefix(pipeline.InboxPrefix("operator")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	info, err := testutil.StreamInfo(js, "AGENTBUS_TURNS")
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Storage != jetstream.FileStorage || info.State.Msgs < 4 {
		t.Errorf("AGENTBUS_TURNS: storage %v, %d events", info.Config.Storage, info.State.Msgs)
	}
}

func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
}

// --- Dockerfile ---

// TestDockerfile checks the Dockerfile against go.mod and cmd/, and with
// AGENTBUS_OPS_BUILD=1 runs its build command.
func TestDockerfile(t *testing.T) {
	df := readFile(t, "Dockerfile")
	gomod := readFile(t, "go.mod")
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if goVer == nil {
		t.Fatal("go.mod: no go directive")
	}
	if !strings.Contains(df, "ARG GO_VERSION="+goVer[1]+"\n") || !strings.Contains(df, "FROM golang:${GO_VERSION} AS build") {
		t.Errorf("builder must be golang:%s (go.mod)", goVer[1])
	}
	if strings.Count(df, "\nFROM ") < 2 {
		t.Error("want a multi-stage build")
	}
	m := regexp.MustCompile(`(?s)RUN [^\n]*\\\n\s*(CGO_ENABLED=0 go build [^\n]*\\\n[^\n]*)`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("no CGO_ENABLED=0 go build in the Dockerfile")
	}
	build := shellFields(strings.ReplaceAll(m[1], "\\\n", " "))
	for _, bin := range cmdBinaries(t) {
		if !slices.Contains(build, "./cmd/"+bin) {
			t.Errorf("the Dockerfile does not build cmd/%s", bin)
		}
	}
	flags := serveFlags(t)
	for _, m := range regexp.MustCompile(`\b(AGENTBUS_[A-Z_]+)=`).FindAllStringSubmatch(df, -1) {
		if !slices.ContainsFunc(mapsKeys(flags), func(f string) bool { return envName(f) == m[1] }) {
			t.Errorf("Dockerfile sets %s, which names no flag", m[1])
		}
	}
	if !strings.Contains(df, `ENTRYPOINT ["/usr/local/bin/entrypoint"]`) || !strings.Contains(df, "ARG BIN=agentbus") {
		t.Error("want ARG BIN (default agentbus) choosing the entrypoint")
	}
	if os.Getenv("AGENTBUS_OPS_BUILD") == "" {
		t.Log("set AGENTBUS_OPS_BUILD=1 to run the Dockerfile's go build (a separate, cold build cache: minutes)")
		return
	}
	// Run the Dockerfile's build command (static, no cgo) into a temp dir.
	out := t.TempDir()
	args := []string{"build"}
	for _, a := range build[3:] { // after CGO_ENABLED=0 go build
		if a == "/out/" {
			a = out + "/"
		}
		args = append(args, a)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, b)
	}
	for _, bin := range cmdBinaries(t) {
		if _, err := os.Stat(filepath.Join(out, bin)); err != nil {
			t.Errorf("build produced no %s: %v", bin, err)
		}
	}
}

// shellFields splits a command line at blanks outside double quotes and
// drops the quotes (enough for the Dockerfile's build line).
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, any = !quoted, true
		case (r == ' ' || r == '\t' || r == '\n') && !quoted:
			if any {
				out = append(out, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// TestOperationsDocCoversFlags: docs/operations.md documents every flag of
// `agentbus serve` and its environment variable.
func TestOperationsDocCoversFlags(t *testing.T) {
	doc := readFile(t, "docs/operations.md")
	for f := range serveFlags(t) {
		if !strings.Contains(doc, "`--"+f+"`") {
			t.Errorf("docs/operations.md does not document --%s", f)
		}
		if !strings.Contains(doc, envName(f)) {
			t.Errorf("docs/operations.md does not name %s", envName(f))
		}
	}
}

// BenchmarkJetStreamPublish measures the cost of sync_interval: always:
// synchronous JetStream publishes (each waits for its ack, as every
// pipeline hop does) from 16 goroutines against a server started from
// ops/nats-server.conf, with and without fsync before ack.
//
//	go test -run '^$' -bench JetStreamPublish -benchtime 3s ./ops/
func BenchmarkJetStreamPublish(b *testing.B) {
	for _, mode := range []string{"always", "default-2m"} {
		b.Run("sync="+mode, func(b *testing.B) {
			s := serverFromConfig(b, repoPath("ops/nats-server.conf"), func(o *server.Options) {
				if mode != "always" {
					o.SyncAlways = false
					o.SyncInterval = 2 * time.Minute
				}
			})
			nc := operatorConn(b, s)
			js, _ := jetstream.New(nc)
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}}); err != nil {
				b.Fatal(err)
			}
			payload := bytes.Repeat([]byte("x"), 512)
			b.SetParallelism(8) // 8 x GOMAXPROCS(2) = 16 publishers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := js.Publish(context.Background(), "b.x", payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// TestLimitsTableIsWhatRuns: the limits table in docs/operations.md holds
// the values the code enforces.
func TestLimitsTableIsWhatRuns(t *testing.T) {
	doc := readFile(t, "docs/operations.md")
	i, j := strings.Index(doc, "<!-- limits:begin -->"), strings.Index(doc, "<!-- limits:end -->")
	if i < 0 || j < i {
		t.Fatal("docs/operations.md has no limits table")
	}
	size := func(n int64) string {
		for _, u := range []struct {
			s string
			n int64
		}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
			if n >= u.n && n%u.n == 0 {
				return strconv.FormatInt(n/u.n, 10) + " " + u.s
			}
		}
		return strconv.FormatInt(n, 10)
	}
	ic, pc := ingest.DefaultConfig(), pipeline.DefaultConfig()
	want := map[string]string{
		"request body":                     size(ic.MaxBodyBytes),
		"turn, encoded for the bus":        size(int64(ic.MaxTurnBytes)),
		"any event of a turn":              size(int64(pipeline.MaxPayload - 8<<10)),
		"messages per turn":                strconv.Itoa(sanitize.DefaultMaxMessages),
		"one message":                      size(sanitize.DefaultMaxBytes),
		"one message, characters":          strconv.Itoa(sanitize.DefaultMaxChars),
		"all messages of a turn":           size(sanitize.DefaultMaxTotalBytes),
		"messages per turn, wire contract": strconv.Itoa(messages.MaxMessages),
		"one message, wire contract":       size(messages.MaxContentBytes),
		"tool calls per message":           strconv.Itoa(messages.MaxToolCalls),
		"tool output":                      size(tools.DefaultMaxOutputBytes),
		"NATS entry requests waiting":      strconv.Itoa(ic.MaxNATSInFlight),
		"HTTP connections":                 strconv.Itoa(ic.MaxConns),
		"HTTP request read time":           ic.ReadTimeout.String(),
		"turn stream":                      size(pc.Streams.MaxBytes),
		"dead-letter stream":               size(pc.Streams.DLQMaxBytes),
		"response cache":                   size(cachekv.DefaultConfig().MaxBytes),
		"one cached answer":                size(int64(cachekv.DefaultConfig().MaxEntryBytes)),
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(doc[i:j], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "limit" {
			continue
		}
		name, val := strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])
		w, ok := want[name]
		if !ok {
			t.Errorf("limits table row %q: no such limit in the test's map", name)
			continue
		}
		seen[name] = true
		if val != w {
			t.Errorf("limits table: %s is %q, the code enforces %q", name, val, w)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("limits table lacks %q", name)
		}
	}
	if pc.Streams.DLQMaxAge != 720*time.Hour || !strings.Contains(doc[i:j], "`--dlq-max-age` 720h") {
		t.Errorf("dead-letter max age: code %s", pc.Streams.DLQMaxAge)
	}
}
