//go:build ignore

// extract copies the schemas agentbus answers with (and the request schema
// its conformance suite sends) out of the official OpenAI OpenAPI document,
// with every schema they reference, into schemas.json. refresh.sh runs it;
// see there.
//
//	go run extract.go -commit SHA -date DATE < openapi.json > schemas.json
//
// Two mechanical changes make the OpenAPI 3.1 document's schemas plain JSON
// Schema (draft 2020-12), which is what the suite validates with:
//   - "nullable": true (an OpenAPI 3.0 keyword some schemas still carry,
//     meaningless to a JSON Schema validator) becomes
//     {"anyOf": [<the schema>, {"type": "null"}]};
//   - descriptions, examples and x-oaiMeta are dropped (documentation only).
//
// Nothing else is changed: no keyword is added, relaxed or tightened.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// roots are the schemas the suite validates against.
var roots = []string{
	"CreateChatCompletionRequest",
	"CreateChatCompletionResponse",
	"CreateChatCompletionStreamResponse",
	"ListModelsResponse",
	"Model",
	"ErrorResponse",
}

// dropped keys carry documentation only.
var dropped = map[string]bool{"description": true, "example": true, "examples": true, "x-oaiMeta": true, "x-oaiExpandable": true, "x-oaiTypeLabel": true, "title": true}

func main() {
	commit := flag.String("commit", "", "commit of github.com/openai/openai-openapi the document comes from")
	date := flag.String("date", "", "that commit's date")
	flag.Parse()
	if *commit == "" {
		fail(fmt.Errorf("-commit is required"))
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Version string `json:"version"`
		} `json:"info"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		fail(fmt.Errorf("openapi.json: %w", err))
	}
	all := doc.Components.Schemas
	out := map[string]any{}
	var visit func(name string)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				visit(strings.TrimPrefix(ref, "#/components/schemas/"))
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	visit = func(name string) {
		if _, done := out[name]; done {
			return
		}
		s, ok := all[name]
		if !ok {
			fail(fmt.Errorf("schema %s is not in the document", name))
		}
		out[name] = nil
		walk(s)
		out[name] = clean(s)
	}
	for _, r := range roots {
		visit(r)
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	res := map[string]any{
		"source": map[string]any{
			"repository":      "https://github.com/openai/openai-openapi",
			"file":            "openapi.json",
			"commit":          *commit,
			"commit_date":     *date,
			"openapi":         doc.OpenAPI,
			"api_version":     doc.Info.Version,
			"roots":           roots,
			"schemas":         names,
			"transformations": "nullable: true -> anyOf [schema, {type: null}]; description, example(s), title and x-oai* annotations dropped",
		},
		"components": map[string]any{"schemas": out},
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		fail(err)
	}
}

// clean drops documentation and rewrites nullable, recursively.
func clean(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := map[string]any{}
		nullable := false
		for k, c := range v {
			switch {
			case dropped[k]:
			case k == "nullable":
				nullable, _ = c.(bool)
			case k == "properties" || k == "patternProperties" || k == "$defs":
				// keys are names, not keywords: keep every one
				props := map[string]any{}
				for pk, pv := range c.(map[string]any) {
					props[pk] = clean(pv)
				}
				m[k] = props
			default:
				m[k] = clean(c)
			}
		}
		if nullable {
			return map[string]any{"anyOf": []any{m, map[string]any{"type": "null"}}}
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, c := range v {
			out[i] = clean(c)
		}
		return out
	}
	return v
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "extract:", err)
	os.Exit(1)
}
