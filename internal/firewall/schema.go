package firewall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ErrSchema is wrapped by errors about a tool's JSON Schema itself (New).
var ErrSchema = errors.New("firewall: unsupported or invalid JSON Schema")

// maxSchemaDepth bounds the nesting of schemas and of the walk over
// properties.
const maxSchemaDepth = 32

// Schemas are JSON Schema as tools publish them (draft 2020-12 by default,
// or the draft named by $schema: 2019-09, 7, 6, 4), compiled with
// github.com/santhosh-tekuri/jsonschema/v6: $ref to "#..." and $defs or
// definitions, allOf/anyOf/oneOf/not, if/then/else, prefixItems,
// patternProperties, unevaluatedProperties, dependentRequired, format
// (asserted), and the rest of the validation vocabulary. Patterns are RE2
// (Go's regexp, linear time); a pattern RE2 cannot compile is an error.
//
// Refused when compiling (so nobody believes a constraint is enforced when
// it is not): keywords outside the vocabulary (a misspelt "maxLenght"),
// $ref to anything outside the document, $dynamicRef, $dynamicAnchor,
// $recursiveRef, $recursiveAnchor and $vocabulary. Annotations are
// accepted: title, description, default, examples, example, deprecated,
// readOnly, writeOnly, $comment, nullable, discriminator, and any "x-"
// extension.
var schemaKeywords = set(
	"$schema", "$id", "$ref", "$anchor", "$defs", "definitions", "$comment",
	"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items",
	"contains", "properties", "patternProperties", "additionalProperties", "propertyNames", "additionalItems",
	"dependencies", "unevaluatedItems", "unevaluatedProperties",
	"type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
	"maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
	"maxProperties", "minProperties", "required", "dependentRequired",
	"format", "contentEncoding", "contentMediaType", "contentSchema",
	"title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples", "example",
	"nullable", "discriminator",
)

// Keywords whose value is a schema, an array of schemas, or an object of
// schemas.
var (
	schemaValued    = set("additionalProperties", "additionalItems", "items", "contains", "propertyNames", "if", "then", "else", "not", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
	schemaArrays    = set("allOf", "anyOf", "oneOf", "prefixItems", "items")
	schemaObjects   = set("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")
	schemaAnnotated = set("default", "examples", "example", "enum", "const", "discriminator")
)

const schemaURL = "urn:agentbus:tool-schema"

// compileSchema compiles one tool's schema.
func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	if err := checkSchemaKeywords(doc, "#", 0); err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return s, nil
}

// noLoader refuses every external reference.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external reference %q is not loaded", url)
}

func checkSchemaKeywords(v any, at string, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%w: %s: nested deeper than %d", ErrSchema, at, maxSchemaDepth)
	}
	m, ok := v.(map[string]any)
	if !ok {
		if _, isBool := v.(bool); isBool {
			return nil
		}
		return fmt.Errorf("%w: %s: a schema must be an object or a boolean", ErrSchema, at)
	}
	for _, k := range sortedKeys(m) {
		val, p := m[k], at+"/"+k
		switch {
		case strings.HasPrefix(k, "x-") || schemaAnnotated[k]:
			continue
		case !schemaKeywords[k]:
			return fmt.Errorf("%w: %s: keyword not supported", ErrSchema, p)
		case k == "$ref":
			if s, _ := val.(string); !strings.HasPrefix(s, "#") {
				return fmt.Errorf("%w: %s: only references inside the schema (\"#...\") are supported", ErrSchema, p)
			}
		}
		for _, sub := range subSchemas(k, val, p) {
			if err := checkSchemaKeywords(sub.v, sub.at, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

type located struct {
	v  any
	at string
}

// subSchemas returns the schemas a keyword's value holds: itself, the
// elements of an array of schemas, or the values of an object of schemas.
func subSchemas(k string, val any, at string) []located {
	var out []located
	switch x := val.(type) {
	case []any:
		if schemaArrays[k] {
			for i, sub := range x {
				out = append(out, located{sub, at + "/" + strconv.Itoa(i)})
			}
		}
	case map[string]any:
		if schemaObjects[k] {
			for _, name := range sortedKeys(x) {
				if _, isArr := x[name].([]any); isArr && k == "dependencies" {
					continue // draft-07 property dependencies
				}
				out = append(out, located{x[name], at + "/" + name})
			}
		} else if schemaValued[k] {
			out = append(out, located{val, at})
		}
	default:
		if schemaValued[k] {
			out = append(out, located{val, at})
		}
	}
	return out
}

// schemaError turns a validation error into one line: the first failing
// leaf, "at '/city': minLength: got 0, want 1".
func schemaError(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return strings.TrimPrefix(ve.Error(), "jsonschema validation failed with "+strconv.Quote(schemaURL)+"\n")
}

// schemaProperties returns the property schemas an object validated by s
// may have, following $ref and allOf/anyOf/oneOf/if/then/else.
func schemaProperties(s *jsonschema.Schema, out map[string][]*jsonschema.Schema, depth int) {
	if s == nil || depth > maxSchemaDepth {
		return
	}
	for name, p := range s.Properties {
		out[name] = append(out[name], p)
	}
	schemaProperties(s.Ref, out, depth+1)
	for _, l := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf, {s.If, s.Then, s.Else}} {
		for _, sub := range l {
			schemaProperties(sub, out, depth+1)
		}
	}
}

// schemaItems returns the schemas the elements of an array validated by s
// may have.
func schemaItems(s *jsonschema.Schema, out []*jsonschema.Schema, depth int) []*jsonschema.Schema {
	if s == nil || depth > maxSchemaDepth {
		return out
	}
	if s.Items2020 != nil {
		out = append(out, s.Items2020)
	}
	if it, ok := s.Items.(*jsonschema.Schema); ok {
		out = append(out, it)
	}
	if its, ok := s.Items.([]*jsonschema.Schema); ok {
		out = append(out, its...)
	}
	out = append(out, s.PrefixItems...)
	out = schemaItems(s.Ref, out, depth+1)
	for _, l := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf} {
		for _, sub := range l {
			out = schemaItems(sub, out, depth+1)
		}
	}
	return out
}

// checkKeyCase refuses an object key that is not declared but differs only
// in case from a declared one (a Go struct would decode "PATH" into the
// field "path", bypassing the checks made on "path"). declared holds the
// names declared at this level besides the schemas' properties.
func checkKeyCase(v any, schemas []*jsonschema.Schema, declared []string, at string, depth int) *finding {
	if depth > maxSchemaDepth {
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		props := map[string][]*jsonschema.Schema{}
		for _, s := range schemas {
			schemaProperties(s, props, 0)
		}
		for _, d := range declared {
			if _, ok := props[d]; !ok {
				props[d] = nil
			}
		}
		if len(props) == 0 {
			return nil
		}
		for _, k := range sortedKeys(x) {
			sub, ok := props[k]
			if !ok {
				for name := range props {
					if strings.EqualFold(name, k) {
						return &finding{RuleKeyCase, "key " + strconv.Quote(at+k) + " differs only in case from the declared " + strconv.Quote(name)}
					}
				}
				continue
			}
			if f := checkKeyCase(x[k], sub, nil, at+k+"/", depth+1); f != nil {
				return f
			}
		}
	case []any:
		var items []*jsonschema.Schema
		for _, s := range schemas {
			items = schemaItems(s, items, 0)
		}
		if len(items) == 0 {
			return nil
		}
		for i, e := range x {
			if f := checkKeyCase(e, items, nil, at+strconv.Itoa(i)+"/", depth+1); f != nil {
				return f
			}
		}
	}
	return nil
}

// typeName names a decoded JSON value's type.
func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case nil:
		return "null"
	}
	return "unknown"
}
