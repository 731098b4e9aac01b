package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

// StageHealth is one stage's aggregate over its instances.
type StageHealth struct {
	Status    string                  `json:"status"`
	Instances []pipeline.HealthReport `json:"instances"`
}

// Health is the body of GET /health.
type Health struct {
	Status string                 `json:"status"`
	NATS   string                 `json:"nats"`
	Stages map[string]StageHealth `json:"stages"`
}

// gather asks every instance of a stage (scatter-gather on its health
// subject) and collects the answers that arrive within the timeout.
func (s *Handler) gather(ctx context.Context, subject string) []pipeline.HealthReport {
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil
	}
	var out []pipeline.HealthReport
	deadline := time.Now().Add(s.cfg.HealthTimeout)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return out
		}
		var rep pipeline.HealthReport
		if json.Unmarshal(m.Data, &rep) == nil {
			out = append(out, rep)
		}
	}
}

// Aggregate collects the health of every expected stage. A stage with no
// answering instance is unhealthy; a stage whose instances disagree is
// degraded.
func (s *Handler) Aggregate(ctx context.Context, readiness bool) Health {
	h := Health{Status: pipeline.Healthy, NATS: pipeline.Healthy, Stages: map[string]StageHealth{}}
	if !s.nc.IsConnected() {
		h.NATS, h.Status = pipeline.Unhealthy, pipeline.Unhealthy
	}
	if _, err := s.js.Stream(ctx, messages.StreamTurns); err != nil {
		h.NATS, h.Status = pipeline.Unhealthy, pipeline.Unhealthy
	}
	type res struct {
		stage string
		reps  []pipeline.HealthReport
	}
	ch := make(chan res, len(s.cfg.Stages))
	for _, st := range s.cfg.Stages {
		go func(st string) {
			subj := pipeline.HealthSubject(st)
			if readiness {
				subj += ".ready"
			}
			ch <- res{st, s.gather(ctx, subj)}
		}(st)
	}
	for range s.cfg.Stages {
		r := <-ch
		sh := StageHealth{Status: pipeline.Unhealthy, Instances: r.reps}
		if len(r.reps) > 0 {
			healthy := 0
			worst := pipeline.Healthy
			for _, rep := range r.reps {
				worst = pipeline.Worst(worst, rep.Status)
				if rep.Status != pipeline.Unhealthy {
					healthy++
				}
			}
			switch {
			case healthy == 0:
				sh.Status = pipeline.Unhealthy
			case worst != pipeline.Healthy:
				sh.Status = pipeline.Degraded
			default:
				sh.Status = pipeline.Healthy
			}
		}
		h.Stages[r.stage] = sh
		h.Status = pipeline.Worst(h.Status, sh.Status)
	}
	return h
}

// health serves GET /health: the overall status to anyone (load
// balancers, probes); the instances, consumers and providers behind it
// only to a caller with a valid API key.
func (s *Handler) health(w http.ResponseWriter, r *http.Request) {
	h := s.Aggregate(r.Context(), false)
	status := http.StatusOK
	if h.Status == pipeline.Unhealthy {
		status = http.StatusServiceUnavailable
	}
	if s.auth != nil {
		if _, err := s.auth.Authenticate(r.Context(), r.Header.Get("Authorization")); err != nil {
			writeJSON(w, status, map[string]string{"status": h.Status})
			return
		}
	}
	writeJSON(w, status, h)
}

func (s *Handler) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": pipeline.Healthy})
}

func (s *Handler) ready(w http.ResponseWriter, r *http.Request) {
	h := s.Aggregate(r.Context(), true)
	status := http.StatusOK
	if h.Status == pipeline.Unhealthy {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"status": h.Status, "nats": h.NATS, "stages": stageStatuses(h)})
}

func stageStatuses(h Health) map[string]string {
	out := map[string]string{}
	for k, v := range h.Stages {
		out[k] = v.Status
	}
	return out
}
