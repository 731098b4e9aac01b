package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/agentbus/agentbus/internal/firewall"
)

// Spec describes a tool to the model, as in the OpenAI "function" tool
// format.
type Spec struct {
	// Name is how the model calls the tool: 1-64 characters of
	// [A-Za-z0-9_-].
	Name string `json:"name"`
	// Description tells the model what the tool does.
	Description string `json:"description"`
	// Parameters is the JSON Schema (an object schema) of the arguments.
	Parameters json.RawMessage `json:"parameters"`
}

// Tool is something the model can call. Call receives the raw JSON
// arguments (a JSON object) and returns the text the model sees. Call must
// honour ctx; an error is shown to the model as "error: <message>".
type Tool interface {
	Spec() Spec
	Call(ctx context.Context, args json.RawMessage) (string, error)
}

// Errors of the registry.
var (
	// ErrInvalidSpec is wrapped when a tool's Spec is unusable.
	ErrInvalidSpec = errors.New("tools: invalid tool spec")
	// ErrDuplicate is wrapped when two tools have the same normalised name.
	ErrDuplicate = errors.New("tools: duplicate tool name")
	// ErrUnknownTool is wrapped when a call names no registered tool.
	ErrUnknownTool = errors.New("tools: unknown tool")
	// ErrUnavailable is wrapped by a tool whose server is down, or whose
	// connection broke during the call (the call did not run, or its
	// outcome is unknown). Unlike the tool's own errors it is not shown to
	// the model: the toolexec stage ends the turn with
	// service_unavailable.
	ErrUnavailable = errors.New("tool unavailable")
)

// Func adapts a function to a Tool.
type Func struct {
	// S is the tool's spec.
	S Spec
	// F runs a call.
	F func(ctx context.Context, args json.RawMessage) (string, error)
}

// Spec returns f.S.
func (f Func) Spec() Spec { return f.S }

// Call runs f.F.
func (f Func) Call(ctx context.Context, args json.RawMessage) (string, error) { return f.F(ctx, args) }

// Registry holds tools by name. Names are unique after
// firewall.NormalizeName ("Calculator" and "calculator" collide). It is
// safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	tools map[string]Tool // by normalised name
}

// NewRegistry returns a registry holding tools, or every problem found
// (joined) if a spec is invalid or a name repeats.
func NewRegistry(tools ...Tool) (*Registry, error) {
	r := &Registry{tools: make(map[string]Tool, len(tools))}
	var errs []error
	for _, t := range tools {
		errs = append(errs, r.Register(t))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Register adds a tool. It fails with ErrInvalidSpec if the spec is
// unusable and with ErrDuplicate if the name is taken.
func (r *Registry) Register(t Tool) error {
	if t == nil {
		return fmt.Errorf("%w: nil tool", ErrInvalidSpec)
	}
	s := t.Spec()
	if err := validateSpec(s); err != nil {
		return err
	}
	key := firewall.NormalizeName(s.Name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.tools[key]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicate, s.Name)
	}
	r.tools[key] = t
	return nil
}

func validateSpec(s Spec) error {
	if l := len(s.Name); l == 0 || l > 64 {
		return fmt.Errorf("%w: name %q must be 1-64 characters", ErrInvalidSpec, s.Name)
	}
	for i := 0; i < len(s.Name); i++ {
		c := s.Name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: name %q: only [A-Za-z0-9_-] allowed", ErrInvalidSpec, s.Name)
		}
	}
	p := bytes.TrimSpace(s.Parameters)
	if len(p) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return fmt.Errorf("%w: %s: parameters must be a JSON Schema object: %v", ErrInvalidSpec, s.Name, err)
	}
	return nil
}

// Unregister removes the tool called name (compared after normalisation)
// and reports whether it was registered.
func (r *Registry) Unregister(name string) bool {
	key := firewall.NormalizeName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.tools[key]
	delete(r.tools, key)
	return ok
}

// Lookup returns the tool called name (compared after normalisation).
func (r *Registry) Lookup(name string) (Tool, bool) {
	key := firewall.NormalizeName(name)
	r.mu.RLock()
	t, ok := r.tools[key]
	r.mu.RUnlock()
	return t, ok
}

// Specs returns every tool's spec, sorted by name.
func (r *Registry) Specs() []Spec {
	r.mu.RLock()
	out := make([]Spec, 0, len(r.tools))
	for _, t := range r.tools {
		out = append(out, t.Spec())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Schemas returns each tool's parameter schema by name: the second
// argument of firewall.New.
func (r *Registry) Schemas() map[string]json.RawMessage {
	specs := r.Specs()
	out := make(map[string]json.RawMessage, len(specs))
	for _, s := range specs {
		out[s.Name] = s.Parameters
	}
	return out
}

// Len returns the number of tools.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tools)
}

// decodeArgs decodes a call's arguments into v, rejecting unknown fields.
// Empty arguments decode as {}.
func decodeArgs(args json.RawMessage, v any) error {
	a := bytes.TrimSpace(args)
	if len(a) == 0 || string(a) == "null" {
		a = []byte("{}")
	}
	d := json.NewDecoder(bytes.NewReader(a))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("invalid arguments: %v", err)
	}
	if d.More() {
		return errors.New("invalid arguments: trailing data")
	}
	return nil
}
