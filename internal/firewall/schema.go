package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrSchema is wrapped by errors about a tool's JSON Schema itself (New).
var ErrSchema = errors.New("firewall: unsupported or invalid JSON Schema")

// maxSchemaDepth bounds the nesting of schemas and of validated values.
const maxSchemaDepth = 32

// schema is a compiled subset of JSON Schema (draft 2020-12 / OpenAI tool
// parameters): type, properties, required, additionalProperties, enum,
// const, minLength, maxLength, pattern, minimum, maximum,
// exclusiveMinimum, exclusiveMaximum, items, minItems, maxItems, allOf,
// anyOf, oneOf. Annotation keywords (description, title, default,
// examples, format, $schema, $id, $comment, strict) are ignored. Any other
// keyword ($ref, not, patternProperties, ...) is refused at compile time so
// nobody believes a constraint is enforced when it is not.
type schema struct {
	types        []string // empty = any
	properties   map[string]*schema
	required     []string
	additional   *schema // nil = anything allowed
	noAdditional bool
	enum         []any
	hasConst     bool
	constV       any
	minLen       int
	maxLen       int // -1 = none
	pattern      *regexp.Regexp
	min, max     *big.Float
	exMin, exMax *big.Float
	items        *schema
	minItems     int
	maxItems     int // -1 = none
	allOf        []*schema
	anyOf        []*schema
	oneOf        []*schema
}

var ignoredKeywords = map[string]bool{
	"description": true, "title": true, "default": true, "examples": true, "format": true,
	"$schema": true, "$id": true, "$comment": true, "strict": true, "deprecated": true,
	"readOnly": true, "writeOnly": true, "nullable": true,
}

func compileSchema(raw json.RawMessage) (*schema, error) {
	var v any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return compileValue(v, "#", 0)
}

func compileValue(v any, path string, depth int) (*schema, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("%w: %s: nested deeper than %d", ErrSchema, path, maxSchemaDepth)
	}
	if b, ok := v.(bool); ok {
		if b {
			return &schema{maxLen: -1, maxItems: -1}, nil
		}
		return &schema{maxLen: -1, maxItems: -1, types: []string{"never"}}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: a schema must be an object or a boolean", ErrSchema, path)
	}
	s := &schema{maxLen: -1, maxItems: -1}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		p := path + "/" + k
		var err error
		switch k {
		case "type":
			switch t := val.(type) {
			case string:
				s.types = []string{t}
			case []any:
				for _, x := range t {
					xs, ok := x.(string)
					if !ok {
						return nil, fmt.Errorf("%w: %s: type names must be strings", ErrSchema, p)
					}
					s.types = append(s.types, xs)
				}
			default:
				return nil, fmt.Errorf("%w: %s: must be a string or an array", ErrSchema, p)
			}
			for _, t := range s.types {
				switch t {
				case "object", "array", "string", "number", "integer", "boolean", "null":
				default:
					return nil, fmt.Errorf("%w: %s: unknown type %q", ErrSchema, p, t)
				}
			}
		case "properties":
			pm, ok := val.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: %s: must be an object", ErrSchema, p)
			}
			s.properties = make(map[string]*schema, len(pm))
			for name, sub := range pm {
				if s.properties[name], err = compileValue(sub, p+"/"+name, depth+1); err != nil {
					return nil, err
				}
			}
		case "required":
			arr, ok := val.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: %s: must be an array of strings", ErrSchema, p)
			}
			for _, x := range arr {
				xs, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%w: %s: must be an array of strings", ErrSchema, p)
				}
				s.required = append(s.required, xs)
			}
		case "additionalProperties":
			if b, ok := val.(bool); ok {
				s.noAdditional = !b
				continue
			}
			if s.additional, err = compileValue(val, p, depth+1); err != nil {
				return nil, err
			}
		case "enum":
			arr, ok := val.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: %s: must be an array", ErrSchema, p)
			}
			s.enum = arr
		case "const":
			s.hasConst, s.constV = true, val
		case "minLength", "maxLength", "minItems", "maxItems":
			n, ok := nonNegInt(val)
			if !ok {
				return nil, fmt.Errorf("%w: %s: must be a non-negative integer", ErrSchema, p)
			}
			switch k {
			case "minLength":
				s.minLen = n
			case "maxLength":
				s.maxLen = n
			case "minItems":
				s.minItems = n
			case "maxItems":
				s.maxItems = n
			}
		case "pattern":
			ps, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s: must be a string", ErrSchema, p)
			}
			if s.pattern, err = regexp.Compile(ps); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrSchema, p, err)
			}
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			f, ok := bigNum(val)
			if !ok {
				return nil, fmt.Errorf("%w: %s: must be a number", ErrSchema, p)
			}
			switch k {
			case "minimum":
				s.min = f
			case "maximum":
				s.max = f
			case "exclusiveMinimum":
				s.exMin = f
			case "exclusiveMaximum":
				s.exMax = f
			}
		case "items":
			if s.items, err = compileValue(val, p, depth+1); err != nil {
				return nil, err
			}
		case "allOf", "anyOf", "oneOf":
			arr, ok := val.([]any)
			if !ok || len(arr) == 0 {
				return nil, fmt.Errorf("%w: %s: must be a non-empty array", ErrSchema, p)
			}
			list := make([]*schema, len(arr))
			for i, sub := range arr {
				if list[i], err = compileValue(sub, p+"/"+strconv.Itoa(i), depth+1); err != nil {
					return nil, err
				}
			}
			switch k {
			case "allOf":
				s.allOf = list
			case "anyOf":
				s.anyOf = list
			case "oneOf":
				s.oneOf = list
			}
		default:
			if !ignoredKeywords[k] {
				return nil, fmt.Errorf("%w: %s: keyword not supported", ErrSchema, p)
			}
		}
	}
	return s, nil
}

func nonNegInt(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 32)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(n), 64)
		if ferr != nil || f != float64(int64(f)) || f < 0 || f > 1<<31 {
			return 0, false
		}
		i = int64(f)
	}
	return int(i), i >= 0
}

func bigNum(v any) (*big.Float, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	f, _, err := big.ParseFloat(string(n), 10, 128, big.ToNearestEven)
	return f, err == nil
}

// validate checks v (decoded with UseNumber) and returns the first
// violation as "path: reason".
func (s *schema) validate(v any, path string, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%s: nested deeper than %d", path, maxSchemaDepth)
	}
	if len(s.types) > 0 {
		ok := false
		for _, t := range s.types {
			if hasType(v, t) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%s: want %s, got %s", path, strings.Join(s.types, " or "), typeName(v))
		}
	}
	if s.enum != nil {
		ok := false
		for _, e := range s.enum {
			if jsonEqual(e, v) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%s: value is not one of the allowed values", path)
		}
	}
	if s.hasConst && !jsonEqual(s.constV, v) {
		return fmt.Errorf("%s: value is not the required constant", path)
	}
	switch x := v.(type) {
	case string:
		n := utf8.RuneCountInString(x)
		if n < s.minLen {
			return fmt.Errorf("%s: shorter than %d characters", path, s.minLen)
		}
		if s.maxLen >= 0 && n > s.maxLen {
			return fmt.Errorf("%s: longer than %d characters", path, s.maxLen)
		}
		if s.pattern != nil && !s.pattern.MatchString(x) {
			return fmt.Errorf("%s: does not match pattern %q", path, s.pattern.String())
		}
	case json.Number:
		f, ok := bigNum(x)
		if !ok {
			return fmt.Errorf("%s: bad number", path)
		}
		if s.min != nil && f.Cmp(s.min) < 0 {
			return fmt.Errorf("%s: below minimum %s", path, s.min.Text('g', -1))
		}
		if s.max != nil && f.Cmp(s.max) > 0 {
			return fmt.Errorf("%s: above maximum %s", path, s.max.Text('g', -1))
		}
		if s.exMin != nil && f.Cmp(s.exMin) <= 0 {
			return fmt.Errorf("%s: not above %s", path, s.exMin.Text('g', -1))
		}
		if s.exMax != nil && f.Cmp(s.exMax) >= 0 {
			return fmt.Errorf("%s: not below %s", path, s.exMax.Text('g', -1))
		}
	case []any:
		if len(x) < s.minItems {
			return fmt.Errorf("%s: fewer than %d items", path, s.minItems)
		}
		if s.maxItems >= 0 && len(x) > s.maxItems {
			return fmt.Errorf("%s: more than %d items", path, s.maxItems)
		}
		if s.items != nil {
			for i, it := range x {
				if err := s.items.validate(it, path+"/"+strconv.Itoa(i), depth+1); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		for _, r := range s.required {
			if _, ok := x[r]; !ok {
				return fmt.Errorf("%s: missing required property %q", path, r)
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := s.properties[k]; ok {
				if err := ps.validate(x[k], path+"/"+k, depth+1); err != nil {
					return err
				}
				continue
			}
			if s.noAdditional {
				return fmt.Errorf("%s: property %q is not allowed", path, k)
			}
			if s.additional != nil {
				if err := s.additional.validate(x[k], path+"/"+k, depth+1); err != nil {
					return err
				}
			}
		}
	}
	for _, sub := range s.allOf {
		if err := sub.validate(v, path, depth+1); err != nil {
			return err
		}
	}
	if len(s.anyOf) > 0 {
		var first error
		for _, sub := range s.anyOf {
			err := sub.validate(v, path, depth+1)
			if err == nil {
				first = nil
				break
			}
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("%s: matches none of anyOf (%v)", path, first)
		}
	}
	if len(s.oneOf) > 0 {
		n := 0
		for _, sub := range s.oneOf {
			if sub.validate(v, path, depth+1) == nil {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: matches %d of oneOf, want exactly 1", path, n)
		}
	}
	return nil
}

func hasType(v any, t string) bool {
	switch t {
	case "never":
		return false
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, ok := bigNum(n)
		return ok && f.IsInt()
	}
	return false
}

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

func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		fx, ok1 := bigNum(x)
		fy, ok2 := bigNum(y)
		return ok1 && ok2 && fx.Cmp(fy) == 0
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	}
	return false
}
