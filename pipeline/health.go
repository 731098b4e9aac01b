package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/micro"
)

// Health states, worst last.
const (
	Healthy   = "healthy"
	Degraded  = "degraded"
	Unhealthy = "unhealthy"
)

// Check is one named health check result.
type Check struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// HealthReport is what a stage instance answers on its health endpoint.
type HealthReport struct {
	Stage    string           `json:"stage"`
	Instance string           `json:"instance"`
	Version  string           `json:"version"`
	Status   string           `json:"status"`
	Checks   map[string]Check `json:"checks"`
	Stats    map[string]int64 `json:"stats"`
	Extra    map[string]any   `json:"extra,omitempty"`
	Uptime   string           `json:"uptime"`
}

// Worst returns the worse of two health states.
func Worst(a, b string) string {
	rank := map[string]int{Healthy: 0, Degraded: 1, Unhealthy: 2, "": 0}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// ServiceName is the NATS micro service name of a stage.
func ServiceName(stage string) string { return "agentbus-" + stage }

// HealthSubject is the subject of a stage's health endpoint. Every instance
// answers (no queue group): a scatter-gather request collects them all.
// Readiness and liveness answer on HealthSubject(stage)+".ready" / ".live".
func HealthSubject(stage string) string { return "agentbus.health." + stage }

func (r *Runtime) stageHealth(ctx context.Context, st *stageRuntime, readinessOnly bool) HealthReport {
	rep := HealthReport{
		Stage: st.stage.Name(), Version: r.cfg.Version, Status: Healthy,
		Checks: map[string]Check{}, Stats: st.stats.Snapshot(),
		Uptime: time.Since(r.started).Round(time.Second).String(),
	}
	if st.svc != nil {
		rep.Instance = st.svc.Info().ID
	}
	add := func(name string, c Check) {
		rep.Checks[name] = c
		rep.Status = Worst(rep.Status, c.Status)
	}
	if nc := st.conn.nc; nc.IsConnected() {
		add("nats", Check{Status: Healthy})
	} else {
		add("nats", Check{Status: Unhealthy, Detail: nc.Status().String()})
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for ev := range st.stage.Handlers {
		d := DurableName(st.stage.Name(), ev)
		if _, err := st.conn.js.Consumer(cctx, messages.StreamTurns, d); err != nil {
			add("consumer "+d, Check{Status: Unhealthy, Detail: err.Error()})
		} else {
			add("consumer "+d, Check{Status: Healthy})
		}
	}
	if r.draining.Load() {
		add("shutdown", Check{Status: Unhealthy, Detail: "draining"})
	}
	if !readinessOnly && st.stage.Health != nil {
		checks, extra := st.stage.Health(ctx)
		for k, c := range checks {
			add(k, c)
		}
		rep.Extra = extra
	}
	return rep
}

func (r *Runtime) addService(st *stageRuntime) error {
	svc, err := newStageService(st.conn.nc, micro.Config{
		Name:        ServiceName(st.stage.Name()),
		Version:     semver(r.cfg.Version),
		Description: "agentbus " + st.stage.Name() + " stage",
		Metadata:    map[string]string{"stage": st.stage.Name()},
	}, st.events, func() any {
		out := map[string]any{"counters": st.stats.Snapshot()}
		if st.stage.Health != nil {
			_, extra := st.stage.Health(context.Background())
			out["extra"] = extra
		}
		return out
	})
	if err != nil {
		return err
	}
	st.svc = svc
	reply := func(readiness bool) micro.HandlerFunc {
		return func(req micro.Request) {
			rep := r.stageHealth(context.Background(), st, readiness)
			b, _ := json.Marshal(rep)
			_ = req.Respond(b)
		}
	}
	noQueue := micro.WithEndpointQueueGroupDisabled()
	if err := svc.AddEndpoint("health", reply(false), micro.WithEndpointSubject(HealthSubject(st.stage.Name())), noQueue); err != nil {
		return err
	}
	if err := svc.AddEndpoint("ready", reply(true), micro.WithEndpointSubject(HealthSubject(st.stage.Name())+".ready"), noQueue); err != nil {
		return err
	}
	if err := svc.AddEndpoint("live", micro.HandlerFunc(func(req micro.Request) {
		_ = req.Respond([]byte(`{"status":"healthy"}`))
	}), micro.WithEndpointSubject(HealthSubject(st.stage.Name())+".live"), noQueue); err != nil {
		return err
	}
	if st.stage.Endpoints != nil {
		if err := st.stage.Endpoints(svc); err != nil {
			return err
		}
	}
	// Serving when the stage has started: the server has registered the
	// endpoints' subscriptions once a round trip on their connection
	// returns (a request sent earlier by another connection, such as
	// ingest's ownership check right after a restart, would find no
	// responder).
	if err := st.conn.nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("stage %s: register its endpoints: %w", st.stage.Name(), err)
	}
	return nil
}

// semver turns a free-form version into the SemVer micro requires.
func semver(v string) string {
	if v == "" || v == "dev" {
		return "0.0.0-dev"
	}
	if v[0] == 'v' {
		return v[1:]
	}
	return v
}
