package provider

import (
	"slices"
	"sort"
	"time"
)

// AnyModel in a provider's models forwards any model name to it as is
// (OpenRouter's hundreds of models); only its declared models and
// aliases are listed.
const AnyModel = "*"

// Catalog is what the llm stage can call: every model a provider declares
// (models, aliases and default), with the providers serving it in failover
// order and what each honours. The llm stage serves it on
// messages.SubjectModels; ingest lists it on /v1/models and checks
// requests against it before they enter the pipeline.
type Catalog struct {
	// Models in the order of the providers' configuration.
	Models []ModelInfo `json:"models"`
	// Open are the providers that take any model name (models "*"): a
	// name not in Models goes to them.
	Open []ModelProvider `json:"open,omitempty"`
	// Default is the model a turn naming none gets.
	Default string `json:"default"`
}

// ModelInfo is one model of the catalog.
type ModelInfo struct {
	// ID is the name clients use.
	ID string `json:"id"`
	// OwnedBy is the first serving provider's kind ("openai",
	// "anthropic", ...; "agentbus" for the offline model).
	OwnedBy string `json:"owned_by"`
	// Created is when the catalog was built (Unix seconds): the model
	// object's created.
	Created int64 `json:"created"`
	// Providers serve the model, in failover order.
	Providers []ModelProvider `json:"providers"`
}

// ModelProvider is one provider of a model.
type ModelProvider struct {
	Name         string       `json:"name"`
	Capabilities Capabilities `json:"capabilities"`
}

// IDs lists the catalog's model names.
func (c Catalog) IDs() []string {
	out := make([]string, 0, len(c.Models))
	for _, m := range c.Models {
		out = append(out, m.ID)
	}
	return out
}

// Find returns the model called id: a listed one, or one the open
// providers take.
func (c Catalog) Find(id string) (ModelInfo, bool) {
	for _, m := range c.Models {
		if m.ID == id {
			return m, true
		}
	}
	if len(c.Open) > 0 && id != "" {
		return ModelInfo{ID: id, Providers: c.Open}, true
	}
	return ModelInfo{}, false
}

// Check reports what the llm stage would answer about req's model and
// parameters without calling anything: a *ModelNotFoundError, the first
// provider's *UnsupportedError when none of the model's providers honours
// every parameter, or nil.
func (c Catalog) Check(req *Request) error {
	model := req.Model
	if model == "" {
		if c.Default == "" {
			return nil
		}
		model = c.Default
	}
	info, ok := c.Find(model)
	if !ok {
		return &ModelNotFoundError{Model: model, Served: c.IDs()}
	}
	var first error
	for _, p := range info.Providers {
		err := p.Capabilities.Check(p.Name, model, req)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// ownedBy is a kind as the catalog's owned_by.
func ownedBy(kind, name string) string {
	switch kind {
	case KindOffline:
		return "agentbus"
	case "":
		return name
	}
	return kind
}

// Catalog returns the models the Failover serves; see Catalog.
func (f *Failover) Catalog() Catalog {
	c := Catalog{}
	index := map[string]int{}
	add := func(id string, e Entry, mp ModelProvider) {
		if id == "" || id == AnyModel {
			return
		}
		i, ok := index[id]
		if !ok {
			index[id] = len(c.Models)
			c.Models = append(c.Models, ModelInfo{ID: id, OwnedBy: ownedBy(e.Kind, e.Provider.Name()), Created: f.created.Unix()})
			i = len(c.Models) - 1
		}
		if !slices.ContainsFunc(c.Models[i].Providers, func(p ModelProvider) bool { return p.Name == mp.Name }) {
			c.Models[i].Providers = append(c.Models[i].Providers, mp)
		}
	}
	for _, e := range f.entries {
		mp := ModelProvider{Name: e.Provider.Name(), Capabilities: KindCapabilities(KindOpenAI)}
		if e.Caps != nil {
			mp.Capabilities = *e.Caps
		}
		if c.Default == "" {
			c.Default = e.Default
		}
		add(e.Default, e, mp)
		for _, m := range e.Models {
			add(m, e, mp)
		}
		aliases := make([]string, 0, len(e.Aliases))
		for a := range e.Aliases {
			aliases = append(aliases, a)
		}
		sort.Strings(aliases)
		for _, a := range aliases {
			add(a, e, mp)
		}
		if len(e.Models) == 0 || slices.Contains(e.Models, AnyModel) {
			c.Open = append(c.Open, mp)
		}
	}
	return c
}

// DefaultModel is the model a request naming none gets (the first
// provider's default); "" when it is the provider's own unnamed default.
func (f *Failover) DefaultModel() string {
	for _, e := range f.entries {
		if e.Default != "" {
			return e.Default
		}
	}
	return ""
}

// now is the catalog's creation clock (a var for tests).
var now = time.Now
