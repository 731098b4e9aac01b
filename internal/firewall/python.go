package firewall

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// This file checks Python 3 source. The code is tokenised the way Python
// tokenises it (identifiers normalised with NFKC as Python does, string
// prefixes, triple quotes, f-string replacement fields tokenised as code,
// line continuations, comments); what does not tokenise is refused,
// including IPython's "!cmd" and "%magic" lines. Then, allowlist first:
//
//   - imports: only the modules the policy lists ("import a.b" binds a, so
//     a must be listed; relative imports are refused);
//   - builtins: of Python's fixed set of builtins, only those that do not
//     run code, open files, read input or reach the interpreter are
//     allowed (eval, exec, compile, open, getattr, setattr, globals,
//     vars, __import__, breakpoint, input, help, ... are not), plus the
//     policy's Builtins;
//   - names and attributes: dunder names other than the data-model
//     methods (__init__, __repr__, __name__, ...) are refused (__class__,
//     __subclasses__, __globals__, __builtins__, __code__, ...), and so are
//     frame and code attributes (gi_frame, f_globals, tb_frame, co_*) and
//     attributes named like a module that reaches the operating system or
//     the interpreter (json.decoder.sys, random._os).
//
// String contents are data: "o" + "s" is harmless when nothing can turn a
// string into a module, a name or code, which is what the rules above
// ensure. The check is static; it is not a sandbox.

// Python rules.
const (
	RulePythonSyntax    = "python.syntax"
	RulePythonImport    = "python.import"
	RulePythonBuiltin   = "python.builtin"
	RulePythonAttribute = "python.attribute"
)

type pythonPolicy struct {
	imports  []string
	builtins map[string]bool
}

func compilePython(p *PythonPolicy) *pythonPolicy {
	return &pythonPolicy{imports: p.Imports, builtins: set(p.Builtins...)}
}

var (
	// pyBuiltins are Python's builtins other than exceptions and warnings
	// (which are all harmless).
	pyBuiltins = set(strings.Fields(`abs aiter all anext any ascii bin bool breakpoint bytearray bytes callable chr
classmethod compile complex copyright credits delattr dict dir divmod enumerate eval exec exit filter float format
frozenset getattr globals hasattr hash help hex id input int isinstance issubclass iter len license list locals map
max memoryview min next object oct open ord pow print property quit range repr reversed round set setattr slice
sorted staticmethod str sum super tuple type vars zip`)...)
	pySafeBuiltins = set(strings.Fields(`abs aiter all anext any ascii bin bool bytearray bytes callable chr classmethod
complex dict dir divmod enumerate filter float format frozenset hasattr hash hex id int isinstance issubclass iter len
list map max memoryview min next object oct ord pow print property range repr reversed round set slice sorted
staticmethod str sum super tuple type zip`)...)
	pyDunders = set(strings.Fields(`__init__ __new__ __del__ __repr__ __str__ __bytes__ __format__ __lt__ __le__ __eq__
__ne__ __gt__ __ge__ __hash__ __bool__ __len__ __length_hint__ __getitem__ __setitem__ __delitem__ __missing__
__iter__ __next__ __reversed__ __contains__ __add__ __sub__ __mul__ __matmul__ __truediv__ __floordiv__ __mod__
__divmod__ __pow__ __lshift__ __rshift__ __and__ __xor__ __or__ __radd__ __rsub__ __rmul__ __rmatmul__ __rtruediv__
__rfloordiv__ __rmod__ __rdivmod__ __rpow__ __rlshift__ __rrshift__ __rand__ __rxor__ __ror__ __iadd__ __isub__
__imul__ __imatmul__ __itruediv__ __ifloordiv__ __imod__ __ipow__ __ilshift__ __irshift__ __iand__ __ixor__ __ior__
__neg__ __pos__ __abs__ __invert__ __complex__ __int__ __float__ __index__ __round__ __trunc__ __floor__ __ceil__
__enter__ __exit__ __aenter__ __aexit__ __aiter__ __anext__ __await__ __call__ __name__ __qualname__ __doc__
__slots__ __post_init__ __all__ __version__ __main__ __future__ __annotations__`)...)
	// pyReach are modules that reach the operating system or the
	// interpreter: an attribute with one of these names (or with a leading
	// underscore) is refused, because allowed modules import them
	// (json.decoder.sys, random._os).
	pyReach = set(strings.Fields(`os sys subprocess builtins importlib ctypes posix nt pty shutil socket signal
multiprocessing pickle marshal runpy imp gc inspect codeop code pathlib tempfile fcntl resource mmap webbrowser http
urllib ftplib smtplib telnetlib asyncio threading thread io glob fileinput platform sysconfig zipimport pkgutil site
pdb bdb types codecs posixpath ntpath genericpath shelve dbm sqlite3 select selectors ssl`)...)
	pyFrameAttrs = set(strings.Fields(`gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await ag_frame ag_code ag_await
f_back f_globals f_locals f_builtins f_code f_trace tb_frame tb_next mro`)...)
	// pyResolvers turn a string into an attribute, a call or code
	// (operator.attrgetter("__class__"), typing.get_type_hints evaluating
	// string annotations, string.Formatter.get_field): refused as names
	// and as attributes, since they would make strings code.
	pyResolvers = set(strings.Fields(`attrgetter methodcaller get_type_hints ForwardRef get_field get_value
evaluate_forward_ref get_annotations eval_type literal_eval`)...)
	// pyPrivateOK are underscore attributes that are public API
	// (namedtuple, enum).
	pyPrivateOK = set(strings.Fields(`_replace _asdict _fields _make _field_defaults _value_ _name_ _missing_
_generate_next_value_ _ignore_ _order_`)...)
	pyKeywords = set(strings.Fields(`False None True and as assert async await break class continue def del elif else
except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield`)...)
)

// check checks Python source.
func (p *pythonPolicy) check(src string) *finding {
	toks, why := pyTokenize(src, 0)
	if why != "" {
		return &finding{RulePythonSyntax, "the code does not tokenise as Python: " + why}
	}
	return p.analyse(toks)
}

func (p *pythonPolicy) allowedModule(name string) bool {
	for _, m := range p.imports {
		if name == m || strings.HasPrefix(name, m+".") {
			return true
		}
	}
	return false
}

const (
	pyName   = 'n'
	pyOp     = 'o'
	pyStr    = 's'
	pyNumber = 'd'
	pyEnd    = ';' // end of a logical line
)

type pyTok struct {
	kind byte
	text string
}

func (p *pythonPolicy) analyse(toks []pyTok) *finding {
	stmtStart := true
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		start := stmtStart
		stmtStart = t.kind == pyEnd || t.kind == pyOp && (t.text == ";" || t.text == ":")
		if t.kind != pyName {
			continue
		}
		afterDot := i > 0 && toks[i-1].kind == pyOp && toks[i-1].text == "."
		switch {
		case afterDot:
			owner := ""
			if i >= 2 && toks[i-2].kind == pyName {
				owner = toks[i-2].text
			}
			if f := p.attribute(t.text, owner); f != nil {
				return f
			}
			continue
		case t.text == "import" && start:
			if f := p.importStmt(toks[i+1:]); f != nil {
				return f
			}
		case t.text == "from" && start:
			if f := p.fromImport(toks[i+1:]); f != nil {
				return f
			}
		case pyKeywords[t.text]:
			continue
		}
		if pyResolvers[t.text] {
			return &finding{RulePythonAttribute, fmt.Sprintf("%s turns a string into an attribute, a call or code", t.text)}
		}
		if isDunder(t.text) && !pyDunders[t.text] {
			return &finding{RulePythonAttribute, fmt.Sprintf("the name %s reaches the interpreter's internals", t.text)}
		}
		if pyBuiltins[t.text] && !pySafeBuiltins[t.text] && !p.builtins[t.text] {
			if i > 0 && toks[i-1].kind == pyName && (toks[i-1].text == "def" || toks[i-1].text == "class") {
				continue // defining a function of that name
			}
			return &finding{RulePythonBuiltin, fmt.Sprintf("the builtin %s is not allowed (it runs code, opens files, reads input or reaches the interpreter)", t.text)}
		}
	}
	return nil
}

func isDunder(s string) bool {
	return len(s) > 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__")
}

func (p *pythonPolicy) attribute(name, owner string) *finding {
	switch {
	case pyResolvers[name]:
		return &finding{RulePythonAttribute, fmt.Sprintf("the attribute %s turns a string into an attribute, a call or code", name)}
	case strings.HasPrefix(name, "_") && !isDunder(name) && !pyPrivateOK[name] && owner != "self" && owner != "cls":
		return &finding{RulePythonAttribute, fmt.Sprintf("the private attribute %s of another object (modules keep internals there)", name)}
	case isDunder(name) && !pyDunders[name]:
		return &finding{RulePythonAttribute, fmt.Sprintf("the attribute %s reaches the interpreter's internals", name)}
	case pyFrameAttrs[name] || strings.HasPrefix(name, "co_"):
		return &finding{RulePythonAttribute, fmt.Sprintf("the attribute %s reaches frames or code objects", name)}
	}
	bare := strings.TrimLeft(name, "_")
	if pyReach[bare] && !p.allowedModule(bare) {
		return &finding{RulePythonAttribute, fmt.Sprintf("the attribute %s names the module %s, which is not allowed", name, bare)}
	}
	return nil
}

// importStmt checks "import a.b [as c], d" (toks follow "import").
func (p *pythonPolicy) importStmt(toks []pyTok) *finding {
	for i := 0; i < len(toks); {
		mod, n := pyDotted(toks[i:])
		if n == 0 {
			return &finding{RulePythonSyntax, "import without a module name"}
		}
		i += n
		alias := i+1 < len(toks) && toks[i].kind == pyName && toks[i].text == "as"
		if alias {
			i += 2
		}
		bound := mod
		if !alias {
			bound = strings.SplitN(mod, ".", 2)[0] // "import a.b" binds a
		}
		if !p.allowedModule(mod) || !p.allowedModule(bound) {
			return &finding{RulePythonImport, fmt.Sprintf("import %s: the module %s is not allowed", mod, bound)}
		}
		if i < len(toks) && toks[i].kind == pyOp && toks[i].text == "," {
			i++
			continue
		}
		return nil
	}
	return nil
}

// fromImport checks "from a.b import c, d" (toks follow "from").
func (p *pythonPolicy) fromImport(toks []pyTok) *finding {
	if len(toks) > 0 && toks[0].kind == pyOp && (toks[0].text == "." || toks[0].text == "...") {
		return &finding{RulePythonImport, "relative imports are not allowed"}
	}
	mod, n := pyDotted(toks)
	if n == 0 {
		return nil // "yield from", "raise ... from": not an import
	}
	if mod == "__future__" {
		return nil
	}
	i := n
	if i >= len(toks) || toks[i].kind != pyName || toks[i].text != "import" {
		return &finding{RulePythonSyntax, "from " + mod + " without import"}
	}
	if p.allowedModule(mod) {
		return nil
	}
	for i++; i < len(toks) && toks[i].kind != pyEnd && !(toks[i].kind == pyOp && toks[i].text == ";"); i++ {
		t := toks[i]
		if t.kind == pyName && t.text != "as" && !(i > 0 && toks[i-1].kind == pyName && toks[i-1].text == "as") {
			if !p.allowedModule(mod + "." + t.text) {
				return &finding{RulePythonImport, fmt.Sprintf("from %s import %s: the module %s is not allowed", mod, t.text, mod)}
			}
		}
		if t.kind == pyOp && t.text == "*" {
			return &finding{RulePythonImport, fmt.Sprintf("from %s import *: the module %s is not allowed", mod, mod)}
		}
	}
	return nil
}

// pyDotted reads a dotted name and returns it and the tokens it used.
func pyDotted(toks []pyTok) (string, int) {
	var b strings.Builder
	i := 0
	for i < len(toks) && toks[i].kind == pyName {
		b.WriteString(toks[i].text)
		i++
		if i+1 < len(toks) && toks[i].kind == pyOp && toks[i].text == "." && toks[i+1].kind == pyName {
			b.WriteByte('.')
			i++
			continue
		}
		break
	}
	return b.String(), i
}

// --- tokeniser

// maxPyNesting bounds f-string nesting.
const maxPyNesting = 8

var pyOps = []string{"**=", "//=", ">>=", "<<=", "...", "->", ":=", "**", "//", "<<", ">>", "<=", ">=", "==", "!=",
	"+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", "+", "-", "*", "/", "%", "@", "&", "|", "^", "~", "<", ">",
	"(", ")", "[", "]", "{", "}", ",", ":", ";", ".", "="}

// pyTokenize tokenises src; nesting counts f-string levels.
func pyTokenize(src string, nesting int) ([]pyTok, string) {
	if nesting > maxPyNesting {
		return nil, "f-strings nested too deeply"
	}
	t := &pyTokeniser{src: src, nesting: nesting, lineStart: true}
	for t.i < len(src) {
		if t.skip() {
			continue
		}
		if why := t.token(); why != "" {
			return nil, why
		}
	}
	if t.depth != 0 {
		return nil, "unbalanced brackets"
	}
	return t.toks, ""
}

// pyTokeniser is the state of tokenising one source.
type pyTokeniser struct {
	src       string
	i         int
	nesting   int // f-string level
	depth     int // brackets
	lineStart bool
	toks      []pyTok
}

// skip consumes blanks, comments, line continuations and newlines, and
// reports whether it consumed anything.
func (t *pyTokeniser) skip() bool {
	src, c := t.src, t.src[t.i]
	switch {
	case c == ' ' || c == '\t' || c == '\f' || c == '\r':
		t.i++
	case c == '\\' && strings.HasPrefix(src[t.i+1:], "\n"):
		t.i += 2
	case c == '\\' && strings.HasPrefix(src[t.i+1:], "\r\n"):
		t.i += 3
	case c == '#':
		for t.i < len(src) && src[t.i] != '\n' {
			t.i++
		}
	case c == '\n':
		if t.depth == 0 && len(t.toks) > 0 && t.toks[len(t.toks)-1].kind != pyEnd {
			t.toks = append(t.toks, pyTok{pyEnd, ""})
		}
		t.lineStart = t.depth == 0
		t.i++
	default:
		return false
	}
	return true
}

// token reads one token at t.i.
func (t *pyTokeniser) token() string {
	src, c := t.src, t.src[t.i]
	if t.lineStart && t.nesting == 0 && (c == '!' || c == '%' || c == '?') {
		return fmt.Sprintf("a line starts with %q (an IPython shell escape or magic)", c)
	}
	t.lineStart = false
	r, size := utf8.DecodeRuneInString(src[t.i:])
	switch {
	case c == '\\':
		return "a backslash outside a string"
	case c == '_' || c < utf8.RuneSelf && unicode.IsLetter(rune(c)) || c >= utf8.RuneSelf && isPyIdentStart(r):
		return t.name(size)
	case c == '\'' || c == '"':
		return t.str(t.i, "")
	case c >= '0' && c <= '9' || c == '.' && t.i+1 < len(src) && src[t.i+1] >= '0' && src[t.i+1] <= '9':
		t.number()
		return ""
	}
	return t.op(r)
}

// name reads an identifier, or a prefixed string literal (r"", f"", ...).
func (t *pyTokeniser) name(size int) string {
	src := t.src
	j := t.i + size
	for j < len(src) {
		r, n := utf8.DecodeRuneInString(src[j:])
		if r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || r >= utf8.RuneSelf && unicode.In(r, unicode.Mn, unicode.Mc, unicode.Nd, unicode.Pc, unicode.Other_ID_Continue) {
			j += n
			continue
		}
		break
	}
	name := src[t.i:j]
	if j < len(src) && (src[j] == '\'' || src[j] == '"') && isStringPrefix(name) {
		return t.str(j, strings.ToLower(name))
	}
	if !isASCII(name) {
		name = norm.NFKC.String(name) // as Python compares identifiers
	}
	t.toks = append(t.toks, pyTok{pyName, name})
	t.i = j
	return ""
}

// str reads the string literal whose quote is at q.
func (t *pyTokeniser) str(q int, prefix string) string {
	toks, next, why := pyString(t.src, q, prefix, t.nesting)
	if why != "" {
		return why
	}
	t.toks = append(t.toks, toks...)
	t.i = next
	return ""
}

func (t *pyTokeniser) number() {
	src, j := t.src, t.i+1
	for j < len(src) {
		d := src[j]
		if d >= '0' && d <= '9' || d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' || d == '_' || d == '.' ||
			(d == '+' || d == '-') && (src[j-1] == 'e' || src[j-1] == 'E') && !strings.ContainsAny(src[t.i:j], "xX") {
			j++
			continue
		}
		break
	}
	t.toks = append(t.toks, pyTok{pyNumber, src[t.i:j]})
	t.i = j
}

func (t *pyTokeniser) op(r rune) string {
	op := ""
	for _, o := range pyOps {
		if strings.HasPrefix(t.src[t.i:], o) {
			op = o
			break
		}
	}
	switch op {
	case "":
		return fmt.Sprintf("the character %q is not Python", r)
	case "(", "[", "{":
		t.depth++
	case ")", "]", "}":
		if t.depth--; t.depth < 0 {
			return "unbalanced " + op
		}
	}
	t.toks = append(t.toks, pyTok{pyOp, op})
	t.i += len(op)
	return ""
}

func isPyIdentStart(r rune) bool {
	return unicode.IsLetter(r) || unicode.In(r, unicode.Nl, unicode.Other_ID_Start)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isStringPrefix(name string) bool {
	switch strings.ToLower(name) {
	case "r", "u", "b", "f", "t", "br", "rb", "fr", "rf", "tr", "rt":
		return true
	}
	return false
}

// pyString reads the string literal whose quote is at src[q]; prefix is
// its lower-case prefix. The replacement fields of f- and t-strings are
// tokenised as code and returned with the string token.
func pyString(src string, q int, prefix string, nesting int) ([]pyTok, int, string) {
	quote := src[q]
	triple := strings.HasPrefix(src[q:], strings.Repeat(string(quote), 3))
	delim := string(quote)
	if triple {
		delim = strings.Repeat(delim, 3)
	}
	raw := strings.Contains(prefix, "r")
	format := strings.ContainsAny(prefix, "ft")
	i := q + len(delim)
	toks := []pyTok{{pyStr, ""}}
	for i < len(src) {
		c := src[i]
		switch {
		case strings.HasPrefix(src[i:], delim):
			return toks, i + len(delim), ""
		case c == '\\':
			i += 2 // an escape; in a raw string the backslash still keeps the quote
			_ = raw
			continue
		case c == '\n' && !triple:
			return nil, 0, "a string ends at the end of a line"
		case format && c == '{':
			if i+1 < len(src) && src[i+1] == '{' {
				i += 2
				continue
			}
			expr, next, why := pyReplacementField(src, i+1, delim, nesting)
			if why != "" {
				return nil, 0, why
			}
			inner, why := pyTokenize(expr, nesting+1)
			if why != "" {
				return nil, 0, why
			}
			toks = append(toks, inner...)
			toks = append(toks, pyTok{pyEnd, ""})
			i = next
			continue
		}
		i++
	}
	return nil, 0, "unterminated string"
}

// pyReplacementField reads an f-string replacement field starting after
// its '{' and returns the code of the expression (and of the fields nested
// in its format spec) and the index after the closing '}'.
func pyReplacementField(src string, i int, delim string, nesting int) (string, int, string) {
	var code strings.Builder
	depth := 0
	inSpec := false
	for i < len(src) {
		c := src[i]
		if !inSpec {
			switch {
			case c == '\'' || c == '"':
				// a string inside the expression (any quote, as in 3.12)
				_, next, why := pyString(src, i, "", nesting+1)
				if why != "" {
					return "", 0, why
				}
				code.WriteString(src[i:next])
				i = next
				continue
			case c == '(' || c == '[' || c == '{':
				depth++
			case c == ')' || c == ']' || c == '}':
				if depth == 0 {
					if c != '}' {
						return "", 0, "unbalanced f-string field"
					}
					return code.String(), i + 1, ""
				}
				depth--
			case depth == 0 && c == '!' && (i+1 >= len(src) || src[i+1] != '='):
				inSpec = true // conversion (!r) and format spec follow
				i++
				continue
			case depth == 0 && c == ':':
				inSpec = true
				i++
				continue
			case c == '#':
				return "", 0, "a comment inside an f-string field"
			}
			code.WriteByte(c)
			i++
			continue
		}
		// conversion or format spec: literal text with nested fields
		switch {
		case strings.HasPrefix(src[i:], delim):
			return "", 0, "unterminated f-string field"
		case c == '{':
			inner, next, why := pyReplacementField(src, i+1, delim, nesting+1)
			if why != "" {
				return "", 0, why
			}
			code.WriteString(";" + inner)
			i = next
			continue
		case c == '}':
			return code.String(), i + 1, ""
		}
		i++
	}
	return "", 0, "unterminated f-string field"
}
