package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/agentbus/agentbus/internal/provider"
	"github.com/agentbus/agentbus/messages"
)

type ridKey struct{}

// withRequestID returns ctx carrying a fresh request id, and the id.
func withRequestID(ctx context.Context) (context.Context, string) {
	rid := NewID("req_")
	return context.WithValue(ctx, ridKey{}, rid), rid
}

// requestID is the request id ServeHTTP (or the NATS entry) gave the
// request: the turn's id, sent back as X-Request-Id on every answer,
// errors included. A context without one gets a fresh id.
func requestID(ctx context.Context) string {
	if rid, ok := ctx.Value(ridKey{}).(string); ok {
		return rid
	}
	return NewID("req_")
}

// ServeHTTP gives every request its id (X-Request-Id on every answer, as
// OpenAI's) and routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, rid := withRequestID(r.Context())
	w.Header().Set("X-Request-Id", rid)
	s.serveObserved(w, r.WithContext(ctx), rid)
}

// routes registers the endpoints. A known path with a method it does not
// serve is 405 (with Allow); an unknown path is 404; both with OpenAI's
// error body.
func (s *Server) routes() {
	s.mux.Handle("/v1/chat/completions", methods{http.MethodPost: s.chat})
	s.mux.Handle("/v1/models", methods{http.MethodGet: s.listModels})
	s.mux.Handle("/v1/models/{id...}", methods{http.MethodGet: s.getModel})
	s.mux.Handle("/health", methods{http.MethodGet: s.health})
	s.mux.Handle("/health/live", methods{http.MethodGet: s.live})
	s.mux.Handle("/health/ready", methods{http.MethodGet: s.ready})
	if h := s.observe.MetricsHandler; h != nil {
		s.mux.Handle("/metrics", methods{http.MethodGet: h.ServeHTTP})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "unknown_url", fmt.Sprintf("Invalid URL (%s %s)", r.Method, truncate(r.URL.Path, 256)), nil)
	})
}

// methods serves a path by method; GET handlers also answer HEAD.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := m[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = m[http.MethodGet]
	}
	if ok {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
		if k == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	sort.Strings(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("Invalid method for URL (%s %s)", r.Method, truncate(r.URL.Path, 256)), nil)
}

func allowed(id Identity, model string) bool {
	return len(id.Models) == 0 || slices.Contains(id.Models, model)
}

// modelCatalog answers the llm stage's catalog, or writes 503.
func (s *Server) modelCatalog(w http.ResponseWriter, r *http.Request) (provider.Catalog, bool) {
	cat, err := s.catalog.get(r.Context())
	if err != nil {
		s.log.Warn("model catalog unavailable", "err", err)
		writeError(w, http.StatusServiceUnavailable, messages.CodeUnavailable, "The model list is unavailable: no llm stage answered; retry later.", nil)
		return cat, false
	}
	return cat, true
}

// listModels serves GET /v1/models: the models the llm stage serves (and
// the key may use), in OpenAI's list format.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	id, err := s.authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "invalid_api_key", err.Error(), nil)
		return
	}
	cat, ok := s.modelCatalog(w, r)
	if !ok {
		return
	}
	list := modelList{Object: "list", Data: []model{}}
	for _, m := range cat.Models {
		if allowed(id, m.ID) {
			list.Data = append(list.Data, toModel(m))
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// getModel serves GET /v1/models/{id}.
func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	id, err := s.authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "invalid_api_key", err.Error(), nil)
		return
	}
	cat, ok := s.modelCatalog(w, r)
	if !ok {
		return
	}
	name := r.PathValue("id")
	for _, m := range cat.Models {
		if m.ID == name && allowed(id, name) {
			writeJSON(w, http.StatusOK, toModel(m))
			return
		}
	}
	writeError(w, http.StatusNotFound, messages.CodeModelNotFound,
		fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", truncate(name, 128)), strp("model"))
}

// checkModel answers what the llm stage would about the request's model
// and parameters, before the turn enters the pipeline: 404
// model_not_found for a model no provider serves (or the key may not
// use), 400 unsupported_parameter naming a parameter none of the model's
// providers honours. When the catalog is unavailable the llm stage
// decides (it makes the same checks).
func (s *Server) checkModel(ctx context.Context, id Identity, req *chatRequest) *requestError {
	notFound := func(model string, served []string) *requestError {
		msg := fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", truncate(model, 128))
		var ok []string
		for _, m := range served {
			if allowed(id, m) {
				ok = append(ok, m)
			}
		}
		if len(ok) > 0 && len(ok) <= 20 {
			msg += " Models served: " + strings.Join(ok, ", ") + "."
		}
		return &requestError{status: http.StatusNotFound, code: messages.CodeModelNotFound, param: "model", msg: msg}
	}
	if req.Model == "" && len(id.Models) > 0 {
		return badRequest(codeMissing, "model", "you must provide a model parameter (this API key may use: %s)", strings.Join(id.Models, ", "))
	}
	if req.Model != "" && !allowed(id, req.Model) {
		return notFound(req.Model, id.Models)
	}
	cat, err := s.catalog.get(ctx)
	if err != nil {
		s.log.Debug("model catalog unavailable; the llm stage checks the model", "err", err)
		return nil
	}
	preq := provider.Request{Model: req.Model, Messages: req.Messages, Params: req.Params}
	err = cat.Check(&preq)
	var mnf *provider.ModelNotFoundError
	var ue *provider.UnsupportedError
	switch {
	case errors.As(err, &mnf):
		return notFound(mnf.Model, mnf.Served)
	case errors.As(err, &ue):
		return badRequest(messages.CodeUnsupportedParameter, ue.Param, "%s", ue.Reason)
	}
	return nil
}
