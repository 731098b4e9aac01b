package ops

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/spend"
	"gopkg.in/yaml.v3"
)

// metricNames are the metric families the code defines (Prometheus
// options and descriptors in pipeline and internal/obs).
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"((?:agentbus|gen_ai)_[a-z_]+)"`)
	names := map[string]bool{}
	for _, f := range []string{"pipeline/observe.go", "internal/obs/metrics.go", "internal/obs/provider.go"} {
		for _, m := range re.FindAllStringSubmatch(readFile(t, f), -1) {
			names[m[1]] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names: %v", len(names), names)
	}
	return names
}

// The dashboard queries only metrics the code exports, on the data source
// Grafana is provisioned with; every documented metric is on it.
func TestGrafanaDashboard(t *testing.T) {
	names := metricNames(t)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "ops/grafana/agentbus.json")), &dash); err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "ops/grafana/provisioning/datasources/prometheus.yml")), &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("data source %+v", ds.Datasources)
	}
	metricRe := regexp.MustCompile(`\b((?:agentbus|gen_ai)_[a-z_]+)`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != ds.Datasources[0].UID || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d queries", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced query %q", p.Title, tg.Expr)
			}
			// Metric names, not label names: drop matchers and groupings.
			bare := regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(tg.Expr, "")
			bare = regexp.MustCompile(`\b(by|without)\s*\([^)]*\)`).ReplaceAllString(bare, "")
			ms := metricRe.FindAllString(bare, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q queries no agentbus metric: %q", p.Title, tg.Expr)
			}
			for _, m := range ms {
				base := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suf); ok && names[b] {
						base = b
					}
				}
				if !names[base] {
					t.Errorf("panel %q: %s is not a metric of agentbus", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	for n := range names {
		if !used[n] {
			t.Errorf("metric %s is on no panel", n)
		}
	}
	ops := readFile(t, "docs/operations.md")
	for n := range names {
		if !strings.Contains(ops, "`"+n+"`") {
			t.Errorf("docs/operations.md does not document metric %s", n)
		}
	}
}

// Prometheus scrapes every stage service at the port it serves /metrics
// on, and the compose file runs Prometheus and Grafana with these files.
func TestPrometheusAndGrafanaServices(t *testing.T) {
	var pc struct {
		ScrapeConfigs []struct {
			JobName      string `yaml:"job_name"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "ops/prometheus.yml")), &pc); err != nil {
		t.Fatal(err)
	}
	c := composeFile(t)
	bools := boolFlags(t)
	jobs := map[string]int{}
	for _, sc := range pc.ScrapeConfigs {
		if len(sc.DNSSDConfigs) != 1 || len(sc.DNSSDConfigs[0].Names) != 1 || sc.DNSSDConfigs[0].Type != "A" {
			t.Errorf("job %s: want one DNS A lookup of its service (one target per replica)", sc.JobName)
			continue
		}
		jobs[sc.DNSSDConfigs[0].Names[0]] = sc.DNSSDConfigs[0].Port
	}
	for _, stage := range stages {
		svc := c.Services[stage]
		flags := commandFlags(t, svc.Command, bools)
		var addr string
		if stage == "ingest" {
			addr = flags["http"]
		} else {
			addr = flags["metrics-listen"]
		}
		_, port, ok := strings.Cut(addr, ":")
		if !ok || port == "" {
			t.Errorf("%s serves no /metrics (command %v)", stage, svc.Command)
			continue
		}
		if p, ok := jobs[stage]; !ok || port != itoa(p) {
			t.Errorf("%s serves /metrics on %s; prometheus scrapes port %d", stage, port, p)
		}
	}
	if len(jobs) != len(stages) {
		t.Errorf("scrape jobs %v, want one per stage %v", jobs, stages)
	}
	prom, graf := c.Services["prometheus"], c.Services["grafana"]
	if !slices.ContainsFunc(mounts(t, prom), func(m mount) bool { return m.Source == "./ops/prometheus.yml" && m.ReadOnly }) ||
		!slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus must run with ./ops/prometheus.yml: %v %v", prom.Volumes, prom.Command)
	}
	want := map[string]bool{"./ops/grafana/provisioning": false, "./ops/grafana/agentbus.json": false}
	for _, m := range mounts(t, graf) {
		if _, ok := want[m.Source]; ok && m.ReadOnly {
			want[m.Source] = true
			if _, err := readFileErr(m.Source); err != nil {
				t.Error(err)
			}
		}
	}
	for src, ok := range want {
		if !ok {
			t.Errorf("grafana does not mount %s read-only", src)
		}
	}
	for _, svc := range []composeService{prom, graf} {
		for _, p := range svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("port %s is not on loopback", p)
			}
		}
	}
}

// The example price table is valid and prices what it lists.
func TestPricesExample(t *testing.T) {
	p, err := spend.LoadPrices(repoPath("ops/prices.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Models) < 5 || p.Note == "" {
		t.Fatalf("example table: %d models, note %q", len(p.Models), p.Note)
	}
	if _, ok := p.Lookup("gpt-4.1-mini"); !ok {
		t.Error("the example has no gpt-4.1-mini")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func readFileErr(p string) (os.FileInfo, error) {
	return os.Stat(repoPath(strings.TrimPrefix(p, "./")))
}
