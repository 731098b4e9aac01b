package sanitize

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The long-document corpus: excerpts of permissively licensed files found on
// the development machine (the Go distribution, the Go module cache, npm's
// bundled packages and man pages, the Rust documentation, the Python
// standard library, the Google Cloud SDK), the project's own docs, some
// system logs, and the long prompts in testdata/docs/prompts.txt. Each
// document belongs to the "tune" or the "heldout" split by a hash of its
// project (a Go package directory, a module, an npm package, a Rust book), so
// held-out documents come from projects the tuning never saw.
//
// AGENTBUS_CORPUS=write go test -run TestBuildCorpus rebuilds
// testdata/docs/corpus.jsonl.gz (seeded; the result depends on what the
// machine has installed, which the manifest in each record names).
const corpusFile = "testdata/docs/corpus.jsonl.gz"

type corpusDoc struct {
	ID      string `json:"id"`
	Source  string `json:"source"`  // path on the machine it was cut from
	License string `json:"license"` // SPDX id of the file's licence
	Project string `json:"project"` // unit of the split
	Kind    string `json:"kind"`    // go, js, py, rs, c, html, md, txt, yaml, json, log, man, licence, prompt
	Lang    string `json:"lang"`
	Split   string `json:"split"` // tune | heldout
	Text    string `json:"text"`
}

const corpusSeed = 20250613

// heldOutShare is the share of projects (not documents) held out.
const heldOutShare = 0.4

func splitOf(project string) string {
	h := fnv.New32a()
	h.Write([]byte(project))
	if float64(h.Sum32()%1000)/1000 < heldOutShare {
		return "heldout"
	}
	return "tune"
}

// loadCorpus reads the committed corpus; it skips the test when absent.
func loadCorpus(t testing.TB) []corpusDoc {
	t.Helper()
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var docs []corpusDoc
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		var d corpusDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return docs
}

// candidate is a file the builder may cut a document from.
type candidate struct {
	path, license, project, kind string
}

func kindOf(path string) string {
	base := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasPrefix(base, "license") || strings.HasPrefix(base, "licence") || strings.HasPrefix(base, "copying") || base == "patents":
		return "licence"
	case strings.HasPrefix(base, "changelog") || strings.HasPrefix(base, "changes") || strings.HasPrefix(base, "history"):
		return "md"
	}
	switch filepath.Ext(base) {
	case ".go":
		return "go"
	case ".js", ".mjs", ".cjs", ".ts":
		return "js"
	case ".py":
		return "py"
	case ".rs":
		return "rs"
	case ".c", ".h", ".s":
		return "c"
	case ".html", ".htm", ".xml":
		return "html"
	case ".md", ".markdown", ".rst":
		return "md"
	case ".txt":
		return "txt"
	case ".yaml", ".yml", ".toml", ".ini", ".cfg":
		return "yaml"
	case ".json":
		return "json"
	case ".sh", ".bash":
		return "sh"
	case ".log":
		return "log"
	}
	return ""
}

// licenceOf classifies a licence text; "" means not permissive or unknown.
func licenceOf(text string) string {
	switch {
	case strings.Contains(text, "Apache License") && strings.Contains(text, "Version 2.0"):
		return "Apache-2.0"
	case strings.Contains(text, "Permission is hereby granted, free of charge"):
		return "MIT"
	case strings.Contains(text, "Redistribution and use in source and binary forms"):
		return "BSD"
	case strings.Contains(text, "Permission to use, copy, modify, and/or distribute"), strings.Contains(text, "ISC License"):
		return "ISC"
	}
	return ""
}

var permissiveNPM = map[string]bool{"MIT": true, "ISC": true, "BSD-2-Clause": true, "BSD-3-Clause": true, "Apache-2.0": true,
	"BlueOak-1.0.0": true, "0BSD": true, "CC0-1.0": true, "Artistic-2.0": true, "(MIT OR CC0-1.0)": true, "MIT-0": true}

// collectCandidates walks the machine's sources in a fixed order.
func collectCandidates(t *testing.T) []candidate {
	var out []candidate
	walk := func(root string, fn func(path string, d fs.DirEntry) *candidate) {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				switch d.Name() {
				case "testdata", "node_modules", "__pycache__", ".git", "vendor", "third_party", "static.files", "generated_clients":
					if path != root {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if c := fn(path, d); c != nil {
				out = append(out, *c)
			}
			return nil
		})
	}
	// The Go distribution (BSD-3-Clause); a project is a top-level package.
	goroot := strings.TrimSpace(runOut("go", "env", "GOROOT"))
	if goroot != "" {
		walk(goroot, func(path string, d fs.DirEntry) *candidate {
			rel, _ := filepath.Rel(goroot, path)
			k := kindOf(path)
			if k == "" || strings.HasPrefix(rel, "test/") || strings.HasPrefix(rel, "pkg/") || strings.HasPrefix(rel, "lib/") {
				return nil
			}
			parts := strings.Split(rel, "/")
			proj := "go/" + parts[0]
			if parts[0] == "src" && len(parts) > 2 {
				proj = "go/" + parts[1]
				if parts[1] == "cmd" && len(parts) > 3 {
					proj = "go/cmd/" + parts[2]
				}
			}
			return &candidate{path, "BSD-3-Clause", proj, k}
		})
	}
	// The Go module cache: every module whose licence is permissive.
	modcache := strings.TrimSpace(runOut("go", "env", "GOMODCACHE"))
	if mods, err := filepath.Glob(filepath.Join(modcache, "*", "*", "*@*")); err == nil {
		more, _ := filepath.Glob(filepath.Join(modcache, "*", "*@*"))
		more2, _ := filepath.Glob(filepath.Join(modcache, "*", "*", "*", "*@*"))
		mods = append(append(mods, more...), more2...)
		slices.Sort(mods)
		for _, m := range mods {
			lic := ""
			for _, n := range []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"} {
				if b, err := os.ReadFile(filepath.Join(m, n)); err == nil {
					lic = licenceOf(string(b))
					break
				}
			}
			if lic == "" {
				continue
			}
			rel, _ := filepath.Rel(modcache, m)
			proj := "mod/" + rel[:strings.Index(rel, "@")]
			walk(m, func(path string, d fs.DirEntry) *candidate {
				if k := kindOf(path); k != "" {
					return &candidate{path, lic, proj, k}
				}
				return nil
			})
		}
	}
	// npm and the packages it bundles.
	npm := "/usr/lib/node_modules/npm"
	if pkgs, err := filepath.Glob(filepath.Join(npm, "node_modules", "*", "package.json")); err == nil {
		scoped, _ := filepath.Glob(filepath.Join(npm, "node_modules", "@*", "*", "package.json"))
		pkgs = append(pkgs, scoped...)
		slices.Sort(pkgs)
		for _, pj := range pkgs {
			var meta struct {
				Name    string `json:"name"`
				License any    `json:"license"`
			}
			b, _ := os.ReadFile(pj)
			if json.Unmarshal(b, &meta) != nil {
				continue
			}
			lic, _ := meta.License.(string)
			if !permissiveNPM[lic] {
				continue
			}
			walk(filepath.Dir(pj), func(path string, d fs.DirEntry) *candidate {
				if k := kindOf(path); k != "" && k != "json" {
					return &candidate{path, lic, "npm/" + meta.Name, k}
				}
				return nil
			})
		}
		walk(filepath.Join(npm, "docs"), func(path string, d fs.DirEntry) *candidate {
			if k := kindOf(path); k != "" {
				return &candidate{path, "Artistic-2.0", "npm/npm-docs", k}
			}
			return nil
		})
		walk(filepath.Join(npm, "man"), func(path string, d fs.DirEntry) *candidate {
			return &candidate{path, "Artistic-2.0", "npm/man/" + filepath.Base(path), "man"}
		})
	}
	// The Rust documentation (MIT OR Apache-2.0); a project is a book.
	if tcs, _ := filepath.Glob("/root/.rustup/toolchains/stable-*/share/doc/rust/html"); len(tcs) > 0 {
		root := tcs[0]
		walk(root, func(path string, d fs.DirEntry) *candidate {
			rel, _ := filepath.Rel(root, path)
			if kindOf(path) != "html" && kindOf(path) != "md" {
				return nil
			}
			parts := strings.Split(rel, "/")
			proj := "rust/" + parts[0]
			if len(parts) > 2 && (parts[0] == "std" || parts[0] == "core" || parts[0] == "alloc") {
				proj += "/" + parts[1]
			}
			return &candidate{path, "MIT OR Apache-2.0", proj, kindOf(path)}
		})
	}
	// The Python standard library (PSF-2.0).
	if libs, _ := filepath.Glob("/root/.pyenv/versions/3.12*/lib/python3.12"); len(libs) > 0 {
		root := libs[0]
		walk(root, func(path string, d fs.DirEntry) *candidate {
			rel, _ := filepath.Rel(root, path)
			if strings.HasPrefix(rel, "site-packages") || strings.HasPrefix(rel, "test/") || strings.HasPrefix(rel, "idlelib/") {
				return nil
			}
			if k := kindOf(path); k == "py" || k == "txt" {
				return &candidate{path, "PSF-2.0", "py/" + strings.TrimSuffix(strings.Split(rel, "/")[0], ".py"), k}
			}
			return nil
		})
	}
	// The Google Cloud SDK: files whose header says Apache-2.0.
	gc := "/usr/lib/google-cloud-sdk/lib/googlecloudsdk"
	walk(gc, func(path string, d fs.DirEntry) *candidate {
		k := kindOf(path)
		if k != "py" && k != "yaml" {
			return nil
		}
		head := make([]byte, 1200)
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		n, _ := f.Read(head)
		f.Close()
		if !bytes.Contains(head[:n], []byte("Apache License")) {
			return nil
		}
		rel, _ := filepath.Rel(gc, path)
		parts := strings.Split(rel, "/")
		proj := "gcloud/" + parts[0]
		if len(parts) > 2 {
			proj += "/" + parts[1]
		}
		return &candidate{path, "Apache-2.0", proj, k}
	})
	// System logs (machine-generated records, no authored content).
	for _, p := range []string{"/var/log/dpkg.log", "/var/log/alternatives.log", "/var/log/apt/history.log", "/var/log/apt/term.log"} {
		if _, err := os.Stat(p); err == nil {
			out = append(out, candidate{p, "none (machine log)", "log/" + filepath.Base(p), "log"})
		}
	}
	// This project's own documentation.
	root, _ := filepath.Abs("../..")
	for _, dir := range []string{root, filepath.Join(root, "docs"), filepath.Join(root, "docs", "decisions")} {
		ms, _ := filepath.Glob(filepath.Join(dir, "*.md"))
		for _, m := range ms {
			out = append(out, candidate{m, "project", "agentbus/" + filepath.Base(m), "md"})
		}
	}
	t.Logf("%d candidate files", len(out))
	return out
}

func runOut(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return string(b)
}

// readCandidate returns the file's text (man pages rendered with nroff's
// backspace overstrike, as `man` shows them on a terminal).
func readCandidate(c candidate) (string, bool) {
	var b []byte
	var err error
	if c.kind == "man" {
		cmd := exec.Command("nroff", "-man", "-Tascii", c.path)
		cmd.Env = append(os.Environ(), "GROFF_NO_SGR=1")
		b, err = cmd.Output()
	} else {
		b, err = os.ReadFile(c.path)
	}
	if err != nil || !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return "", false
	}
	return string(b), true
}

// excerpt cuts a document of about n bytes from text, at line boundaries,
// from the start or from a random line.
func excerpt(rng *rand.Rand, text string, n int) string {
	if len(text) <= n {
		return text
	}
	start := 0
	if rng.IntN(2) == 1 {
		start = rng.IntN(len(text) - n)
		if i := strings.IndexByte(text[start:], '\n'); i >= 0 {
			start += i + 1
		}
	}
	end := min(start+n, len(text))
	if i := strings.LastIndexByte(text[start:end], '\n'); i > n/2 {
		end = start + i + 1
	}
	for end < len(text) && !utf8.RuneStart(text[end]) {
		end++
	}
	return text[start:end]
}

// kindQuota is how many documents each kind contributes (before the split).
var kindQuota = map[string]int{
	"go": 170, "js": 110, "py": 130, "rs": 10, "c": 30, "html": 150, "md": 190, "txt": 60, "yaml": 90,
	"json": 40, "sh": 20, "log": 24, "man": 60, "licence": 70,
}

// TestBuildCorpus rebuilds testdata/docs/corpus.jsonl.gz from this machine.
func TestBuildCorpus(t *testing.T) {
	if os.Getenv("AGENTBUS_CORPUS") != "write" {
		t.Skip("set AGENTBUS_CORPUS=write to rebuild " + corpusFile)
	}
	rng := rand.New(rand.NewPCG(corpusSeed, 1))
	byKind := map[string][]candidate{}
	for _, c := range collectCandidates(t) {
		byKind[c.kind] = append(byKind[c.kind], c)
	}
	var docs []corpusDoc
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		cands := byKind[k]
		rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		perProject := map[string]int{}
		taken := 0
		for i := 0; i < len(cands)*10 && taken < kindQuota[k]; i++ {
			c := cands[i%len(cands)]
			if k != "log" && i >= len(cands) {
				break
			}
			if taken >= kindQuota[k] {
				break
			}
			// At most 6 documents of one kind from one project (10 cuts
			// of one log file).
			if perProject[c.project] >= 6 && (k != "log" || perProject[c.project] >= 10) {
				continue
			}
			text, ok := readCandidate(c)
			if !ok || len(strings.TrimSpace(text)) < 400 {
				continue
			}
			// Log-uniform length between 600 bytes and 24 KB; logs and
			// HTML pages run longer.
			lo, hi := 600.0, 24000.0
			if k == "log" || k == "html" {
				lo, hi = 2000, 30000
			}
			n := int(math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo))))
			text = excerpt(rng, text, n)
			if len(text) < 400 {
				continue
			}
			perProject[c.project]++
			taken++
			docs = append(docs, corpusDoc{
				ID: fmt.Sprintf("%s-%04d", k, taken), Source: c.path, License: c.license, Project: c.project,
				Kind: k, Lang: "en", Split: splitOf(c.project), Text: text,
			})
		}
		t.Logf("%-8s %4d documents from %d candidates", k, taken, len(cands))
	}
	docs = append(docs, readPrompts(t)...)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	enc := json.NewEncoder(zw)
	enc.SetEscapeHTML(false)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corpusFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d documents, %d bytes compressed", len(docs), buf.Len())
}

// readPrompts parses testdata/docs/prompts.txt.
func readPrompts(t testing.TB) []corpusDoc {
	t.Helper()
	b, err := os.ReadFile("testdata/docs/prompts.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusDoc
	for _, rec := range strings.Split(string(b), "\n=== ")[1:] {
		head, body, _ := strings.Cut(rec, "\n")
		id, lang, _ := strings.Cut(head, " ")
		proj := "prompt/" + id
		out = append(out, corpusDoc{ID: "prompt-" + id, Source: "testdata/docs/prompts.txt", License: "project", Project: proj,
			Kind: "prompt", Lang: lang, Split: splitOf(proj), Text: strings.TrimSpace(body)})
	}
	return out
}
