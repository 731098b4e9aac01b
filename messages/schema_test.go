package messages_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/messages"
)

// The JSON Schema files in schema/ are generated from the Go types by this
// test: `go test ./messages -run Schema -update` rewrites them, a plain run
// fails when they drift from the Go types. The generator walks struct
// fields by reflection (json tags, embedded structs flattened as
// encoding/json does, omitempty/omitzero = not required), takes every
// description from the Go doc comments and adds the constraints that
// Turn.Validate enforces from the table below.

var update = flag.Bool("update", false, "rewrite messages/schema/*.json from the Go types")

const (
	schemaDir    = "schema"
	schemaDraft  = "https://json-schema.org/draft/2020-12/schema"
	schemaBaseID = "https://github.com/agentbus/agentbus/messages/schema/"
)

// payload is one schema file: a Go type and where it travels.
type payload struct {
	file    string
	typ     reflect.Type
	events  []string // turn events carried (agentbus.turn.<event>.<rid>)
	subject string   // other subject, if not a turn event
}

var payloads = []payload{
	{file: "turn.json", typ: reflect.TypeFor[messages.Turn](), events: []string{messages.EventReceived}},
	{file: "admitted.json", typ: reflect.TypeFor[messages.Admitted](), events: []string{messages.EventAdmitted}},
	{file: "generation.json", typ: reflect.TypeFor[messages.Generation](), events: []string{messages.EventToolCalls, messages.EventTooled, messages.EventGenerated}},
	{file: "rejected.json", typ: reflect.TypeFor[messages.Rejected](), events: []string{messages.EventRejected}},
	{file: "completed.json", typ: reflect.TypeFor[messages.Completed](), events: []string{messages.EventCompleted}},
	{file: "failed.json", typ: reflect.TypeFor[messages.Failed](), events: []string{messages.EventFailed}},
	{file: "delta.json", typ: reflect.TypeFor[messages.Delta](), subject: messages.StreamSubject("<request_id>") + " (core NATS, not persisted)"},
	{file: "dead_letter.json", typ: reflect.TypeFor[messages.DeadLetter](), subject: messages.DLQSubject("<stage>") + " (JetStream stream " + messages.StreamDLQ + ")"},
}

func payloadFor(t testing.TB, file string) payload {
	t.Helper()
	for _, p := range payloads {
		if p.file == file {
			return p
		}
	}
	t.Fatalf("no payload %s", file)
	return payload{}
}

// obj is a JSON object that keeps its keys in insertion order, so the
// generated files list properties in Go field order.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshalRaw(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := marshalRaw(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalRaw is json.Marshal without HTML escaping ("<rid>" stays
// readable in the files).
func marshalRaw(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// set replaces key k or appends it.
func (o obj) set(k string, v any) obj {
	for i := range o {
		if o[i].k == k {
			o[i].v = v
			return o
		}
	}
	return append(o, kv{k, v})
}

func (o obj) get(k string) (any, bool) {
	for _, e := range o {
		if e.k == k {
			return e.v, true
		}
	}
	return nil, false
}

var idPattern = fmt.Sprintf("^[A-Za-z0-9_-]{1,%d}$", messages.MaxIDLen)

// constraints the Go types cannot express but the code enforces, keyed
// "GoType.json_name" (the type that declares the field; an embedded
// field keeps its declaring type). Every entry must be used.
func constraints() map[string]obj {
	status := obj{{"minimum", 400}, {"maximum", 599}}
	nonNeg := obj{{"minimum", 0}}
	id := obj{{"pattern", idPattern}}
	return map[string]obj{
		"Turn.schema_version": {{"description", fmt.Sprintf("Version of the payload format, %d. A client may send 0 (or leave it out): the guard reads it as %d.", messages.SchemaVersion, messages.SchemaVersion)},
			{"enum", []int{0, messages.SchemaVersion}}},
		"Turn.request_id":      id,
		"Turn.conversation_id": id,
		"Turn.stream_to":       id,
		"Turn.user":            {{"minLength", 1}},
		"Turn.messages":        {{"type", "array"}, {"minItems", 1}, {"maxItems", messages.MaxMessages}},
		"Turn.cost":            nonNeg,
		"Params.temperature":   {{"minimum", 0}, {"maximum", 2}},
		"Params.top_p":         {{"minimum", 0}, {"maximum", 1}},
		"Params.max_tokens":    {{"minimum", 1}},
		"Params.stop":          {{"maxItems", messages.MaxStopSequences}},
		"Message.role":         {{"enum", []string{messages.RoleSystem, messages.RoleDeveloper, messages.RoleUser, messages.RoleAssistant, messages.RoleTool}}},
		"Message.content": {{"description", "The content of the message: a string, null for an assistant message that only carries tool_calls (as the OpenAI API does), or an array of content parts (text, image_url, refusal), kept as sent."},
			{"type", []string{"string", "null", "array"}}, {"items", obj{{"$ref", "#/$defs/ContentPart"}}}},
		"Message.tool_calls":        {{"maxItems", messages.MaxToolCalls}},
		"Generation.round":          nonNeg,
		"Completed.schema_version":  {{"const", messages.SchemaVersion}},
		"Completed.request_id":      id,
		"Completed.conversation_id": id,
		"Rejected.schema_version":   {{"const", messages.SchemaVersion}},
		"Rejected.request_id":       id,
		"Rejected.status":           status,
		"Rejected.retry_after_ms":   nonNeg,
		"Failed.schema_version":     {{"const", messages.SchemaVersion}},
		"Failed.request_id":         id,
		"Failed.conversation_id":    id,
		"Failed.status":             status,
		"Failed.retry_after_ms":     nonNeg,
		"Delta.request_id":          id,
		"Delta.seq":                 {{"minimum", 1}},
		"DeadLetter.schema_version": {{"const", messages.SchemaVersion}},
		"DeadLetter.attempts":       nonNeg,
	}
}

// extraDefs are definitions referenced only from constraints.
var extraDefs = map[string]obj{
	"ContentPart": {
		{"description", "One part of an array-form content, as in the OpenAI API: a text part, an image_url part (user messages only), or a refusal part (assistant messages only)."},
		{"anyOf", []obj{
			{{"type", "object"}, {"required", []string{"type", "text"}}, {"properties", obj{{"type", obj{{"const", messages.PartText}}}, {"text", obj{{"type", "string"}}}}}},
			{{"type", "object"}, {"required", []string{"type", "image_url"}}, {"properties", obj{{"type", obj{{"const", messages.PartImage}}},
				{"image_url", obj{{"type", "object"}, {"required", []string{"url"}}, {"properties", obj{{"url", obj{{"type", "string"}}}, {"detail", obj{{"enum", []string{"auto", "low", "high"}}}}}}}}}}},
			{{"type", "object"}, {"required", []string{"type", "refusal"}}, {"properties", obj{{"type", obj{{"const", messages.PartRefusal}}}, {"refusal", obj{{"type", "string"}}}}}},
		}},
	},
}

// customJSON lists the types with their own MarshalJSON whose wire form the
// constraints table describes; any other json.Marshaler fails generation.
var customJSON = map[reflect.Type]string{
	reflect.TypeFor[messages.Message](): "Message.content",
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

type gen struct {
	t     testing.TB
	docs  map[string]string
	cons  map[string]obj
	used  map[string]bool
	defs  map[string]obj
	extra map[string]bool
}

func newGen(t testing.TB, docs map[string]string) *gen {
	return &gen{t: t, docs: docs, cons: constraints(), used: map[string]bool{}}
}

// generate returns the schema file for p, indented, with a final newline.
func (g *gen) generate(p payload) []byte {
	g.defs = map[string]obj{}
	g.extra = map[string]bool{}
	desc := g.docs[p.typ.Name()]
	var where []string
	for _, e := range p.events {
		where = append(where, messages.Subject(e, "<request_id>"))
	}
	if p.subject != "" {
		where = append(where, p.subject)
	}
	desc += " Subject: " + strings.Join(where, ", ") + "."
	o := obj{{"$schema", schemaDraft}, {"$id", schemaBaseID + p.file}, {"title", p.typ.Name()}, {"description", desc}}
	o = append(o, g.object(p.typ)...)
	if len(g.defs)+len(g.extra) > 0 {
		var names []string
		for n := range g.defs {
			names = append(names, n)
		}
		for n := range g.extra {
			names = append(names, n)
		}
		sort.Strings(names)
		var defs obj
		for _, n := range names {
			if d, ok := g.defs[n]; ok {
				defs = append(defs, kv{n, d})
			} else {
				defs = append(defs, kv{n, extraDefs[n]})
			}
		}
		o = append(o, kv{"$defs", defs})
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(o); err != nil {
		g.t.Fatal(err)
	}
	return b.Bytes()
}

// object describes a struct: type, required, properties.
func (g *gen) object(t reflect.Type) obj {
	var props obj
	var required []string
	g.fields(t, &props, &required)
	o := obj{{"type", "object"}}
	if len(required) > 0 {
		o = append(o, kv{"required", required})
	}
	return append(o, kv{"properties", props})
}

func (g *gen) fields(t reflect.Type, props *obj, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props, required) // flattened, as encoding/json does
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := props.get(name); dup {
			g.t.Fatalf("%s: field %q appears twice after flattening embedded structs; teach the generator Go's shadowing rules", t.Name(), name)
		}
		optional := slices.Contains(strings.Split(opts, ","), "omitempty") || slices.Contains(strings.Split(opts, ","), "omitzero")
		s := obj{}
		if d := g.docs[t.Name()+"."+f.Name]; d != "" {
			s = append(s, kv{"description", d})
		}
		s = append(s, g.typeSchema(f.Type, optional, t.Name()+"."+name)...)
		key := t.Name() + "." + name
		if c, ok := g.cons[key]; ok {
			g.used[key] = true
			for _, e := range c {
				s = s.set(e.k, e.v)
				if r, ok := e.v.(obj); ok && e.k == "items" {
					if ref, ok := r.get("$ref"); ok {
						g.extra[strings.TrimPrefix(ref.(string), "#/$defs/")] = true
					}
				}
			}
		}
		if d, ok := s.get("description"); ok && s[0].k != "description" {
			rest := obj{{"description", d}}
			for _, e := range s {
				if e.k != "description" {
					rest = append(rest, e)
				}
			}
			s = rest
		}
		*props = append(*props, kv{name, s})
		if !optional {
			*required = append(*required, name)
		}
	}
}

func nullable(typ string, null bool) any {
	if null {
		return []string{typ, "null"}
	}
	return typ
}

// typeSchema maps a Go type to a schema. optional is the field's
// omitempty: a nil slice or map without it is encoded as null.
func (g *gen) typeSchema(t reflect.Type, optional bool, field string) obj {
	if t == timeType {
		return obj{{"type", "string"}, {"format", "date-time"}}
	}
	if t == rawType {
		return obj{} // any JSON value, carried verbatim
	}
	marshaler := reflect.TypeFor[json.Marshaler]()
	if t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler) {
		if _, ok := customJSON[t]; !ok {
			g.t.Fatalf("%s: type %s has its own MarshalJSON; describe its wire form in constraints() and list it in customJSON", field, t)
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return obj{{"type", "boolean"}}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return obj{{"type", "integer"}}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return obj{{"type", "integer"}, {"minimum", 0}}
	case reflect.Float32, reflect.Float64:
		return obj{{"type", "number"}}
	case reflect.String:
		return obj{{"type", "string"}}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return obj{{"type", nullable("string", !optional)}, {"contentEncoding", "base64"}}
		}
		return obj{{"type", nullable("array", !optional)}, {"items", g.typeSchema(t.Elem(), true, field+"[]")}}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			g.t.Fatalf("%s: map key %s is not a string", field, t.Key())
		}
		return obj{{"type", nullable("object", !optional)}, {"additionalProperties", g.typeSchema(t.Elem(), true, field+"{}")}}
	case reflect.Pointer:
		inner := g.typeSchema(t.Elem(), true, field)
		if ty, ok := inner.get("type"); ok {
			if s, ok := ty.(string); ok {
				return inner.set("type", []string{s, "null"})
			}
			return inner
		}
		return obj{{"anyOf", []obj{inner, {{"type", "null"}}}}}
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = obj{} // placeholder against recursion
			d := obj{}
			if doc := g.docs[name]; doc != "" {
				d = append(d, kv{"description", doc})
			}
			g.defs[name] = append(d, g.object(t)...)
		}
		return obj{{"$ref", "#/$defs/" + name}}
	}
	g.t.Fatalf("%s: no JSON Schema mapping for Go type %s", field, t)
	return nil
}

// goDocs reads the doc comments of the package's types and struct fields:
// "Type" and "Type.Field" -> text on one line.
func goDocs(t testing.TB) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	clean := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil {
					doc = gd.Doc
				}
				docs[ts.Name.Name] = clean(doc.Text())
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, fld := range st.Fields.List {
					text := clean(fld.Doc.Text() + " " + fld.Comment.Text())
					for _, n := range fld.Names {
						docs[ts.Name.Name+"."+n.Name] = text
					}
				}
			}
		}
	}
	return docs
}

// TestSchemaFilesMatchGoTypes keeps schema/*.json true to the Go types.
func TestSchemaFilesMatchGoTypes(t *testing.T) {
	g := newGen(t, goDocs(t))
	want := map[string]bool{}
	for _, p := range payloads {
		want[p.file] = true
		b := g.generate(p)
		path := filepath.Join(schemaDir, p.file)
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		disk, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run: go test ./messages -run Schema -update)", err)
			continue
		}
		if !bytes.Equal(disk, b) {
			t.Errorf("%s is out of date with the Go types (run: go test ./messages -run Schema -update):\n%s", path, firstDiff(disk, b))
		}
	}
	for key := range g.cons {
		if !g.used[key] {
			t.Errorf("constraint %q matches no field: a field was renamed or removed", key)
		}
	}
	entries, err := os.ReadDir(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && !want[e.Name()] {
			t.Errorf("schema/%s is not generated from any Go type: remove it or add it to payloads", e.Name())
		}
	}
}

func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  file: %s\n  Go:   %s", i+1, x, y)
		}
	}
	return "(whitespace only)"
}

// TestSchemaCoversEveryEvent: each turn event has exactly one schema.
func TestSchemaCoversEveryEvent(t *testing.T) {
	seen := map[string]string{}
	for _, p := range payloads {
		for _, e := range p.events {
			if prev, dup := seen[e]; dup {
				t.Errorf("event %s is in %s and %s", e, prev, p.file)
			}
			seen[e] = p.file
		}
	}
	for _, e := range messages.Events {
		if seen[e] == "" {
			t.Errorf("event %s has no schema file", e)
		}
	}
	if len(seen) != len(messages.Events) {
		t.Errorf("schema events %v, messages.Events %v", seen, messages.Events)
	}
}

func loadSchema(t testing.TB, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schemaDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return s
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAny(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

func fp(f float64) *float64 { return &f }
func ip(i int) *int         { return &i }

// samples are real Go values, one or more per schema, with edge cases.
func samples() []struct {
	name, file string
	v          any
} {
	at := time.Date(2026, 11, 2, 10, 4, 5, 123456789, time.UTC)
	call := messages.Message{Role: messages.RoleAssistant, ToolCalls: []messages.ToolCall{
		{ID: "call_1", Type: "function", Function: messages.FunctionCall{Name: "calculator", Arguments: `{"expression":"6*7"}`}},
	}}
	result := messages.Message{Role: messages.RoleTool, ToolCallID: "call_1", Name: "calculator", Content: "42"}
	final := messages.Message{Role: messages.RoleAssistant, Content: "6 × 7 = 42"}
	turn := messages.Turn{
		SchemaVersion: messages.SchemaVersion, RequestID: "req_0123abcd", ConversationID: "conv-7", UseHistory: true,
		User: "alice@example.com", KeyID: "k1", Endpoint: "chat.completions", Model: "gpt-4o-mini",
		Params:   messages.Params{Temperature: fp(0.2), TopP: fp(1), MaxTokens: ip(256), Stop: []string{"\n\n"}},
		Messages: []messages.Message{{Role: messages.RoleSystem, Content: "Be brief."}, {Role: messages.RoleUser, Content: "What is 6*7? ünïcödé"}},
		Stream:   true, Cost: 1.5, CreatedAt: at,
	}
	minimal := messages.Turn{RequestID: "r", ConversationID: "c", User: "u", Endpoint: "nats",
		Messages: []messages.Message{{Role: messages.RoleUser, Content: "hi"}}, CreatedAt: at}
	// A client replays a whole tool exchange as input.
	replayed := minimal
	replayed.Messages = []messages.Message{{Role: messages.RoleUser, Content: "6*7?"}, call, result}
	adm := messages.Admitted{Turn: turn, Guard: messages.Verdict{Action: "flag", Score: 0.4, Rules: []string{"injection.ignore_previous"}, EstimatedTokens: 17}}
	verdicts := []messages.ToolVerdict{{ToolCallID: "call_1", Tool: "calculator", Verdict: "allow", Rule: "allowed", ResultVerdict: "allow", DurationMS: 3}}
	toolcalls := messages.Generation{Admitted: adm, Round: 0, Steps: []messages.Message{call}, Usage: messages.Usage{PromptTokens: 20, CompletionTokens: 5, TotalTokens: 25}, Provider: "offline", ResolvedModel: "offline-1"}
	tooled := toolcalls
	tooled.Steps = []messages.Message{call, result}
	tooled.ToolVerdicts = verdicts
	generated := tooled
	generated.Round = 1
	generated.Steps = []messages.Message{call, result, final}
	noSteps := messages.Generation{Admitted: messages.Admitted{Turn: minimal}}
	return []struct {
		name, file string
		v          any
	}{
		{"turn full", "turn.json", turn},
		{"turn minimal, version 0", "turn.json", minimal},
		{"turn with tool exchange as input", "turn.json", replayed},
		{"admitted", "admitted.json", adm},
		{"toolcalls: assistant with tool_calls and null content", "generation.json", toolcalls},
		{"tooled", "generation.json", tooled},
		{"generated", "generation.json", generated},
		{"generation with nil steps (null)", "generation.json", noSteps},
		{"rejected rate limit", "rejected.json", messages.Rejected{SchemaVersion: 1, RequestID: "req_1", ConversationID: "c", User: "u",
			Code: messages.CodeRateLimited, Status: 429, Reason: "rate limit exceeded (user)", Rules: []string{"ratelimit.user"},
			RetryAfterMS: 1500, RateLimit: map[string]string{"x-ratelimit-remaining-requests": "0"}, At: at}},
		{"rejected undecodable payload (no conversation, no user)", "rejected.json", messages.Rejected{SchemaVersion: 1, RequestID: "req_1",
			Code: messages.CodeInvalidRequest, Status: 400, Reason: "payload is not a valid Turn", At: at}},
		{"completed", "completed.json", messages.Completed{SchemaVersion: 1, RequestID: "req_1", ConversationID: "c", User: "u", Model: "m",
			Provider: "offline", Message: final, Steps: generated.Steps, ToolVerdicts: verdicts, Guard: adm.Guard, Usage: generated.Usage, CreatedAt: at, CompletedAt: at.Add(time.Second)}},
		{"completed minimal", "completed.json", messages.Completed{SchemaVersion: 1, RequestID: "req_1", ConversationID: "c", User: "u", Model: "m", Message: final, CreatedAt: at, CompletedAt: at}},
		{"failed tool blocked", "failed.json", messages.Failed{SchemaVersion: 1, RequestID: "req_1", ConversationID: "c", User: "u", Stage: "toolexec",
			Code: messages.CodeToolBlocked, Status: 403, Reason: "blocked", Steps: []messages.Message{call},
			ToolVerdicts: []messages.ToolVerdict{{ToolCallID: "call_1", Tool: "shell", Verdict: "block", Rule: "deny"}}, At: at}},
		{"failed provider unavailable", "failed.json", messages.Failed{SchemaVersion: 1, RequestID: "req_1", ConversationID: "c", User: "u", Stage: "llm",
			Code: messages.CodeProviderUnavailable, Status: 503, Reason: "breaker open", RetryAfterMS: 30000, At: at}},
		{"delta", "delta.json", messages.Delta{RequestID: "req_1", Seq: 1, Content: "Hel"}},
		{"delta error", "delta.json", messages.Delta{RequestID: "req_1", Seq: 3, Done: true, Error: "stream broke"}},
		{"dead letter binary payload", "dead_letter.json", messages.DeadLetter{SchemaVersion: 1, Stage: "guard", Subject: messages.Subject(messages.EventReceived, "bad1"),
			MsgID: "bad1/received/0", Attempts: 3, Deliveries: 3, Reason: "decode: invalid character", Payload: []byte{0xff, 0x00, '{'},
			Headers: map[string]string{messages.HeaderCorrelationID: "bad1"}, At: at}},
		{"dead letter nil payload", "dead_letter.json", messages.DeadLetter{SchemaVersion: 1, Stage: "llm", At: at}},
	}
}

// TestSchemaValidatesGoValues: what Go writes is valid against the files
// (strictly: no property the schema does not list), and what the schema
// describes reads back into the same Go value.
func TestSchemaValidatesGoValues(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			if reflect.TypeOf(s.v) != payloadFor(t, s.file).typ {
				t.Fatalf("sample is a %T, %s describes %s", s.v, s.file, payloadFor(t, s.file).typ)
			}
			schema := loadSchema(t, s.file)
			b := mustJSON(t, s.v)
			if errs := validate(schema, decodeAny(t, b), true); len(errs) > 0 {
				t.Fatalf("%s rejects %s:\n%s", s.file, b, strings.Join(errs, "\n"))
			}
			back := reflect.New(reflect.TypeOf(s.v))
			if err := json.Unmarshal(b, back.Interface()); err != nil {
				t.Fatal(err)
			}
			if again := mustJSON(t, back.Interface()); !bytes.Equal(again, b) {
				t.Fatalf("round trip changed the payload:\n%s\n%s", b, again)
			}
		})
	}
	// The edge case the brief of the wire format names: null content.
	b := mustJSON(t, samples()[4].v)
	step := decodeAny(t, b).(map[string]any)["steps"].([]any)[0].(map[string]any)
	if c, ok := step["content"]; !ok || c != nil {
		t.Fatalf("assistant tool call message is not encoded with null content: %s", b)
	}
}

// TestSchemaAcceptsClientForms: input forms other languages send that the
// Go decoder accepts are valid against the schema too.
func TestSchemaAcceptsClientForms(t *testing.T) {
	for _, in := range []string{
		// content as an array of text parts, no optional fields
		`{"schema_version":1,"request_id":"r1","conversation_id":"c1","user":"bob","endpoint":"nats","created_at":"2026-11-02T10:00:00Z",
		  "messages":[{"role":"user","content":[{"type":"text","text":"Hello, "},{"type":"text","text":"world"}]}]}`,
		// schema_version 0, params with nulls, an unknown field (ignored by Go, allowed by the schema)
		`{"schema_version":0,"request_id":"r-2","conversation_id":"c_2","user":"bob","endpoint":"nats","created_at":"2026-11-02T10:00:00.5+01:00",
		  "params":{"temperature":null,"max_tokens":5},"messages":[{"role":"user","content":"hi"}],"x_client":"py"}`,
		// an assistant message resent with its refusal as a part (agent frameworks' history)
		`{"schema_version":1,"request_id":"r3","conversation_id":"c3","user":"bob","endpoint":"nats","created_at":"2026-11-02T10:00:00Z",
		  "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"refusal","refusal":"I can't help with that."}]},{"role":"user","content":"why?"}]}`,
	} {
		v := decodeAny(t, []byte(in))
		if errs := validate(loadSchema(t, "turn.json"), v, false); len(errs) > 0 {
			t.Errorf("turn.json rejects %s:\n%s", in, strings.Join(errs, "\n"))
		}
		var turn messages.Turn
		if err := json.Unmarshal([]byte(in), &turn); err != nil {
			t.Errorf("Go rejects %s: %v", in, err)
			continue
		}
		if err := turn.Validate(); err != nil {
			t.Errorf("Turn.Validate rejects %s: %v", in, err)
		}
	}
}

// TestSchemaRejectsInvalid: the schema (and this validator) catch what
// the Go side rejects.
func TestSchemaRejectsInvalid(t *testing.T) {
	ok := `{"schema_version":1,"request_id":"r1","conversation_id":"c1","user":"bob","endpoint":"nats","created_at":"2026-11-02T10:00:00Z","messages":[{"role":"user","content":"hi"}]}`
	if errs := validate(loadSchema(t, "turn.json"), decodeAny(t, []byte(ok)), false); len(errs) > 0 {
		t.Fatalf("base turn invalid: %v", errs)
	}
	edit := func(f func(m map[string]any)) string {
		m := decodeAny(t, []byte(ok)).(map[string]any)
		f(m)
		return string(mustJSON(t, m))
	}
	msg := func(m map[string]any) map[string]any { return m["messages"].([]any)[0].(map[string]any) }
	cases := []struct {
		name, file, in, want string
	}{
		{"missing request_id", "turn.json", edit(func(m map[string]any) { delete(m, "request_id") }), `missing required property "request_id"`},
		{"request_id with a dot", "turn.json", edit(func(m map[string]any) { m["request_id"] = "a.b" }), "does not match"},
		{"stream_to with a wildcard", "turn.json", edit(func(m map[string]any) { m["stream_to"] = "a.>" }), "does not match"},
		{"request_id too long", "turn.json", edit(func(m map[string]any) { m["request_id"] = strings.Repeat("a", messages.MaxIDLen+1) }), "does not match"},
		{"schema_version 2", "turn.json", edit(func(m map[string]any) { m["schema_version"] = 2 }), "not one of"},
		{"schema_version as string", "turn.json", edit(func(m map[string]any) { m["schema_version"] = "1" }), "want integer"},
		{"no messages", "turn.json", edit(func(m map[string]any) { m["messages"] = []any{} }), "fewer than 1"},
		{"messages null", "turn.json", edit(func(m map[string]any) { m["messages"] = nil }), "want array"},
		{"unknown role", "turn.json", edit(func(m map[string]any) { msg(m)["role"] = "robot" }), "not one of"},
		{"content a number", "turn.json", edit(func(m map[string]any) { msg(m)["content"] = 7 }), "want string, null or array"},
		{"image part without its image", "turn.json", edit(func(m map[string]any) {
			msg(m)["content"] = []any{map[string]any{"type": "image_url"}}
		}), "matches no alternative"},
		{"refusal part without its refusal", "turn.json", edit(func(m map[string]any) {
			msg(m)["content"] = []any{map[string]any{"type": "refusal"}}
		}), "matches no alternative"},
		{"audio content part", "turn.json", edit(func(m map[string]any) {
			msg(m)["content"] = []any{map[string]any{"type": "input_audio"}}
		}), "matches no alternative"},
		{"tool call without id", "turn.json", edit(func(m map[string]any) {
			msg(m)["tool_calls"] = []any{map[string]any{"type": "function", "function": map[string]any{"name": "f", "arguments": "{}"}}}
		}), `missing required property "id"`},
		{"temperature 3", "turn.json", edit(func(m map[string]any) { m["params"] = map[string]any{"temperature": 3} }), "greater than maximum"},
		{"five stop sequences", "turn.json", edit(func(m map[string]any) { m["params"] = map[string]any{"stop": []any{"a", "b", "c", "d", "e"}} }), "more than"},
		{"created_at not a date-time", "turn.json", edit(func(m map[string]any) { m["created_at"] = "yesterday" }), "not a date-time"},
		{"negative cost", "turn.json", edit(func(m map[string]any) { m["cost"] = -1 }), "less than minimum"},
		{"status 200 on a rejection", "rejected.json", `{"schema_version":1,"request_id":"r","conversation_id":"","user":"","code":"x","status":200,"reason":"","at":"2026-11-02T10:00:00Z"}`, "less than minimum"},
		{"payload not base64", "dead_letter.json", `{"schema_version":1,"stage":"s","subject":"","msg_id":"","attempts":1,"deliveries":1,"reason":"","payload":"%%%","at":"2026-11-02T10:00:00Z"}`, "not base64"},
		{"deliveries negative", "dead_letter.json", `{"schema_version":1,"stage":"s","subject":"","msg_id":"","attempts":1,"deliveries":-1,"reason":"","payload":null,"at":"2026-11-02T10:00:00Z"}`, "less than minimum"},
		{"rate_limit value not a string", "rejected.json", `{"schema_version":1,"request_id":"r","conversation_id":"","user":"","code":"x","status":429,"reason":"","rate_limit":{"a":1},"at":"2026-11-02T10:00:00Z"}`, "want string"},
		{"usage tokens fractional", "completed.json", `{"schema_version":1,"request_id":"r","conversation_id":"c","user":"u","model":"m","message":{"role":"assistant","content":"x"},"guard":{"action":"allow","score":0},"usage":{"prompt_tokens":1.5,"completion_tokens":0,"total_tokens":0},"created_at":"2026-11-02T10:00:00Z","completed_at":"2026-11-02T10:00:00Z"}`, "want integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := validate(loadSchema(t, c.file), decodeAny(t, []byte(c.in)), false)
			if len(errs) == 0 {
				t.Fatalf("%s accepts %s", c.file, c.in)
			}
			if !strings.Contains(strings.Join(errs, "\n"), c.want) {
				t.Fatalf("errors %q do not mention %q", errs, c.want)
			}
		})
	}
}

// TestSchemaKeywordsSupported: the files use only keywords the validator
// below implements (or pure annotations), so a passing validation means
// something.
func TestSchemaKeywordsSupported(t *testing.T) {
	known := map[string]bool{}
	for _, k := range strings.Fields(validatedKeywords + " " + annotationKeywords) {
		known[k] = true
	}
	var walk func(file, path string, s any)
	walk = func(file, path string, s any) {
		m, ok := s.(map[string]any)
		if !ok {
			t.Errorf("%s %s: schema is %T, want object", file, path, s)
			return
		}
		for k, v := range m {
			if !known[k] {
				t.Errorf("%s %s: keyword %q is not supported by the test validator", file, path, k)
			}
			switch k {
			case "properties", "$defs":
				for n, sub := range v.(map[string]any) {
					walk(file, path+"/"+k+"/"+n, sub)
				}
			case "items", "additionalProperties":
				walk(file, path+"/"+k, v)
			case "anyOf":
				for i, sub := range v.([]any) {
					walk(file, fmt.Sprintf("%s/anyOf/%d", path, i), sub)
				}
			}
		}
	}
	for _, p := range payloads {
		s := loadSchema(t, p.file)
		if s["$schema"] != schemaDraft {
			t.Errorf("%s: $schema %v", p.file, s["$schema"])
		}
		walk(p.file, "#", s)
	}
}

// TestSchemaDocExamples validates every JSON block of docs/nats-clients.md
// that is marked with a `<!-- schema: FILE -->` line against that file,
// and decodes it into the Go type (a Turn must also pass Validate).
func TestSchemaDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "nats-clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- schema: ([a-z_]+\\.json) -->\\s*```json\\n(.*?)```")
	found := 0
	for _, m := range re.FindAllSubmatch(doc, -1) {
		file, body := string(m[1]), m[2]
		found++
		p := payloadFor(t, file)
		if errs := validate(loadSchema(t, file), decodeAny(t, body), true); len(errs) > 0 {
			t.Errorf("doc example for %s is invalid:\n%s\n%s", file, body, strings.Join(errs, "\n"))
		}
		v := reflect.New(p.typ)
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v.Interface()); err != nil {
			t.Errorf("doc example for %s does not decode into %s: %v", file, p.typ, err)
			continue
		}
		if turn, ok := v.Interface().(*messages.Turn); ok {
			if err := turn.Validate(); err != nil {
				t.Errorf("doc example turn fails Validate: %v", err)
			}
		}
	}
	if found < 3 {
		t.Fatalf("found %d marked JSON examples in docs/nats-clients.md, want at least 3", found)
	}
}

// A small JSON Schema (draft 2020-12) validator: enough for the keywords
// the generated files use, and nothing else.

const (
	validatedKeywords  = "$ref type enum const required properties additionalProperties items minItems maxItems minimum maximum minLength pattern format contentEncoding anyOf"
	annotationKeywords = "$schema $id $defs title description"
)

// validate returns every violation of v against root. strict also
// rejects properties an object schema does not list.
func validate(root map[string]any, v any, strict bool) []string {
	var errs []string
	var check func(s map[string]any, v any, path string)
	check = func(s map[string]any, v any, path string) {
		fail := func(format string, a ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, a...)) }
		if ref, ok := s["$ref"].(string); ok {
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			def, found := root["$defs"].(map[string]any)[name].(map[string]any)
			if !ok || !found {
				fail("unresolvable $ref %q", ref)
				return
			}
			check(def, v, path)
		}
		if ty, ok := s["type"]; ok {
			var types []string
			switch ty := ty.(type) {
			case string:
				types = []string{ty}
			case []any:
				for _, x := range ty {
					types = append(types, x.(string))
				}
			}
			if !slices.ContainsFunc(types, func(t string) bool { return hasType(v, t) }) {
				want := strings.Join(types, ", ")
				if i := strings.LastIndex(want, ", "); i >= 0 {
					want = want[:i] + " or " + want[i+2:]
				}
				fail("got %s, want %s", jsonType(v), want)
				return
			}
		}
		if e, ok := s["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return reflect.DeepEqual(x, v) }) {
			fail("%v is not one of %v", v, e)
		}
		if c, ok := s["const"]; ok && !reflect.DeepEqual(c, v) {
			fail("got %v, want const %v", v, c)
		}
		switch v := v.(type) {
		case map[string]any:
			if req, ok := s["required"].([]any); ok {
				for _, r := range req {
					if _, ok := v[r.(string)]; !ok {
						fail("missing required property %q", r)
					}
				}
			}
			props, _ := s["properties"].(map[string]any)
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if ps, ok := props[k].(map[string]any); ok {
					check(ps, v[k], path+"."+k)
				} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
					check(ap, v[k], path+"."+k)
				} else if ap, ok := s["additionalProperties"].(bool); ok && !ap {
					fail("property %q is not allowed", k)
				} else if strict && props != nil {
					fail("property %q is not in the schema", k)
				}
			}
		case []any:
			if n, ok := s["minItems"].(float64); ok && float64(len(v)) < n {
				fail("%d items, fewer than %v", len(v), n)
			}
			if n, ok := s["maxItems"].(float64); ok && float64(len(v)) > n {
				fail("%d items, more than %v", len(v), n)
			}
			if is, ok := s["items"].(map[string]any); ok {
				for i, x := range v {
					check(is, x, fmt.Sprintf("%s[%d]", path, i))
				}
			}
		case float64:
			if n, ok := s["minimum"].(float64); ok && v < n {
				fail("%v is less than minimum %v", v, n)
			}
			if n, ok := s["maximum"].(float64); ok && v > n {
				fail("%v is greater than maximum %v", v, n)
			}
		case string:
			if n, ok := s["minLength"].(float64); ok && float64(utf8.RuneCountInString(v)) < n {
				fail("shorter than %v characters", n)
			}
			if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
				fail("%q does not match %s", v, p)
			}
			if s["format"] == "date-time" {
				if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
					fail("%q is not a date-time (RFC 3339)", v)
				}
			}
			if s["contentEncoding"] == "base64" {
				if _, err := base64.StdEncoding.DecodeString(v); err != nil {
					fail("%q is not base64", v)
				}
			}
		}
		if alts, ok := s["anyOf"].([]any); ok {
			saved := errs
			matched := false
			for _, alt := range alts {
				errs = nil
				check(alt.(map[string]any), v, path)
				if len(errs) == 0 {
					matched = true
					break
				}
			}
			errs = saved
			if !matched {
				fail("matches no alternative of anyOf")
			}
		}
	}
	check(root, v, "$")
	return errs
}

func hasType(v any, t string) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if v == math.Trunc(v) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
