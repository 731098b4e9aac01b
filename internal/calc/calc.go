// Package calc evaluates arithmetic expressions with its own parser (no
// eval): the parser of the calculator tool and of the offline model, so
// that both compute the same value from the same text.
//
// It supports + - * / % (remainder), ^ and ** (power, right-associative,
// binding tighter than unary minus: -2^2 = -4), parentheses, unary minus
// and plus, decimals and exponents (1.5e3), × · ÷ and − (U+2212), the
// constants pi and e, and the functions sqrt, abs, min, max, round, floor,
// ceil, exp, ln, log (natural), log10, log2, sin, cos, tan. Names are
// case-insensitive.
//
//	v, err := calc.Eval("(17*23)^2 / 4", calc.Limits{})
//	fmt.Println(calc.Format(v)) // 38220.25
//
// Errors are *[Error] values, exact and with a 1-based character position
// where one applies: "division by zero", "unexpected ')' at position 7",
// "expression too long". The work is bounded by [Limits].
package calc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Default limits.
const (
	DefaultMaxLength = 1024
	DefaultMaxDepth  = 64
)

// Limits bound the work of one evaluation. Zero fields take the defaults.
type Limits struct {
	// MaxLength bounds the expression, in bytes. Default DefaultMaxLength.
	MaxLength int
	// MaxDepth bounds the nesting of parentheses, unary signs, powers and
	// function calls. Default DefaultMaxDepth.
	MaxDepth int
}

// Error is an evaluation error. Pos is the 1-based character position it
// refers to, or 0.
type Error struct {
	Msg string
	Pos int
	err error // what Unwrap returns
}

func (e *Error) Error() string {
	if e.Pos > 0 {
		return e.Msg + " at position " + strconv.Itoa(e.Pos)
	}
	return e.Msg
}

// Unwrap returns ErrDivisionByZero for a division by zero, else nil.
func (e *Error) Unwrap() error { return e.err }

// ErrDivisionByZero is wrapped by the error of every division by zero
// (x/0, x%0, 0^-n).
var ErrDivisionByZero = errors.New("division by zero")

func divisionByZero() *Error { return &Error{Msg: ErrDivisionByZero.Error(), err: ErrDivisionByZero} }

// Eval returns the value of expr: a finite number, or an *Error.
func Eval(expr string, lim Limits) (float64, error) {
	if lim.MaxLength <= 0 {
		lim.MaxLength = DefaultMaxLength
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	if len(expr) > lim.MaxLength {
		return 0, &Error{Msg: "expression too long"}
	}
	if !utf8.ValidString(expr) {
		return 0, &Error{Msg: "expression is not valid UTF-8"}
	}
	toks, err := tokenize(expr)
	if err != nil {
		return 0, err
	}
	if len(toks) == 1 { // only EOF
		return 0, &Error{Msg: "empty expression"}
	}
	p := &parser{toks: toks, maxDepth: lim.MaxDepth}
	v, err := p.expr()
	if err != nil {
		return 0, err
	}
	if t := p.peek(); t.kind != tEOF {
		return 0, &Error{Msg: "unexpected " + t.describe(), Pos: t.pos}
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, &Error{Msg: "result is too large"}
	}
	return v, nil
}

// Format prints integral values without a fraction ("391") and others with
// up to 15 significant digits ("0.3" for 0.1+0.2).
func Format(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		if v == 0 {
			return "0" // also for -0
		}
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 15, 64)
}

type tokKind int

const (
	tEOF tokKind = iota
	tNum
	tIdent
	tOp // + - * / % ^ ** ( ) ,
)

type token struct {
	kind tokKind
	text string
	num  float64
	pos  int // 1-based rune position
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tNum:
		return "number " + t.text
	case tIdent:
		return "name \"" + t.text + "\""
	}
	return "'" + t.text + "'"
}

func tokenize(s string) ([]token, error) {
	var toks []token
	pos := 0 // rune index
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		pos++
		switch {
		case unicode.IsSpace(r):
			i += size
		case r >= '0' && r <= '9' || r == '.':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
				k := j + 1
				if k < len(s) && (s[k] == '+' || s[k] == '-') {
					k++
				}
				if k < len(s) && s[k] >= '0' && s[k] <= '9' {
					for k < len(s) && s[k] >= '0' && s[k] <= '9' {
						k++
					}
					j = k
				}
			}
			text := s[i:j]
			v, err := strconv.ParseFloat(text, 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return nil, &Error{Msg: "invalid number \"" + text + "\"", Pos: pos}
			}
			if math.IsInf(v, 0) {
				return nil, &Error{Msg: "number too large", Pos: pos}
			}
			toks = append(toks, token{kind: tNum, text: text, num: v, pos: pos})
			pos += j - i - 1 // ASCII only
			i = j
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || r == '_'):
			j := i
			for j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
				j++
			}
			toks = append(toks, token{kind: tIdent, text: strings.ToLower(s[i:j]), pos: pos})
			pos += j - i - 1
			i = j
		case r == '*' && i+1 < len(s) && s[i+1] == '*':
			toks = append(toks, token{kind: tOp, text: "**", pos: pos})
			pos++
			i += 2
		case strings.ContainsRune("+-*/%^(),", r):
			toks = append(toks, token{kind: tOp, text: string(r), pos: pos})
			i += size
		case r == '×' || r == '·':
			toks = append(toks, token{kind: tOp, text: "*", pos: pos})
			i += size
		case r == '÷':
			toks = append(toks, token{kind: tOp, text: "/", pos: pos})
			i += size
		case r == '−': // U+2212 minus sign
			toks = append(toks, token{kind: tOp, text: "-", pos: pos})
			i += size
		default:
			return nil, &Error{Msg: fmt.Sprintf("unexpected character %q", r), Pos: pos}
		}
	}
	toks = append(toks, token{kind: tEOF, pos: pos + 1})
	return toks, nil
}

type parser struct {
	toks     []token
	i        int
	depth    int
	maxDepth int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == s
}

func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > p.maxDepth {
		return &Error{Msg: "expression nested too deeply", Pos: t.pos}
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// expr := term (('+'|'-') term)*
func (p *parser) expr() (float64, error) {
	v, err := p.term()
	if err != nil {
		return 0, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.next()
		r, err := p.term()
		if err != nil {
			return 0, err
		}
		if op.text == "+" {
			v += r
		} else {
			v -= r
		}
	}
	return v, nil
}

// term := unary (('*'|'/'|'%') unary)*
func (p *parser) term() (float64, error) {
	v, err := p.unary()
	if err != nil {
		return 0, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("%") {
		op := p.next()
		r, err := p.unary()
		if err != nil {
			return 0, err
		}
		switch op.text {
		case "*":
			v *= r
		case "/":
			if r == 0 {
				return 0, divisionByZero()
			}
			v /= r
		case "%":
			if r == 0 {
				return 0, divisionByZero()
			}
			v = math.Mod(v, r)
		}
	}
	return v, nil
}

// unary := ('-'|'+') unary | power
func (p *parser) unary() (float64, error) {
	if p.isOp("-") || p.isOp("+") {
		op := p.next()
		if err := p.enter(op); err != nil {
			return 0, err
		}
		defer p.leave()
		v, err := p.unary()
		if op.text == "-" {
			v = -v
		}
		return v, err
	}
	return p.power()
}

// power := primary (('^'|'**') unary)?
func (p *parser) power() (float64, error) {
	base, err := p.primary()
	if err != nil {
		return 0, err
	}
	if p.isOp("^") || p.isOp("**") {
		op := p.next()
		if err := p.enter(op); err != nil {
			return 0, err
		}
		defer p.leave()
		exp, err := p.unary()
		if err != nil {
			return 0, err
		}
		if base == 0 && exp < 0 {
			return 0, divisionByZero()
		}
		v := math.Pow(base, exp)
		if math.IsNaN(v) {
			return 0, &Error{Msg: "power of a negative number to a fractional exponent", Pos: op.pos}
		}
		return v, nil
	}
	return base, nil
}

var funcs = map[string]struct {
	min, max int // argument count; max -1 = any
	f        func(a []float64) (float64, string)
}{
	"sqrt": {1, 1, func(a []float64) (float64, string) {
		if a[0] < 0 {
			return 0, "square root of a negative number"
		}
		return math.Sqrt(a[0]), ""
	}},
	"abs":   {1, 1, func(a []float64) (float64, string) { return math.Abs(a[0]), "" }},
	"round": {1, 1, func(a []float64) (float64, string) { return math.Round(a[0]), "" }},
	"floor": {1, 1, func(a []float64) (float64, string) { return math.Floor(a[0]), "" }},
	"ceil":  {1, 1, func(a []float64) (float64, string) { return math.Ceil(a[0]), "" }},
	"exp":   {1, 1, func(a []float64) (float64, string) { return math.Exp(a[0]), "" }},
	"sin":   {1, 1, func(a []float64) (float64, string) { return math.Sin(a[0]), "" }},
	"cos":   {1, 1, func(a []float64) (float64, string) { return math.Cos(a[0]), "" }},
	"tan":   {1, 1, func(a []float64) (float64, string) { return math.Tan(a[0]), "" }},
	"ln":    {1, 1, logf(math.Log)},
	"log":   {1, 1, logf(math.Log)},
	"log10": {1, 1, logf(math.Log10)},
	"log2":  {1, 1, logf(math.Log2)},
	"min": {1, -1, func(a []float64) (float64, string) {
		m := a[0]
		for _, x := range a[1:] {
			m = math.Min(m, x)
		}
		return m, ""
	}},
	"max": {1, -1, func(a []float64) (float64, string) {
		m := a[0]
		for _, x := range a[1:] {
			m = math.Max(m, x)
		}
		return m, ""
	}},
}

func logf(f func(float64) float64) func(a []float64) (float64, string) {
	return func(a []float64) (float64, string) {
		if a[0] <= 0 {
			return 0, "logarithm of a non-positive number"
		}
		return f(a[0]), ""
	}
}

// primary := number | name | name '(' args ')' | '(' expr ')'
func (p *parser) primary() (float64, error) {
	t := p.next()
	switch {
	case t.kind == tNum:
		return t.num, nil
	case t.kind == tOp && t.text == "(":
		if err := p.enter(t); err != nil {
			return 0, err
		}
		defer p.leave()
		v, err := p.expr()
		if err != nil {
			return 0, err
		}
		if !p.isOp(")") {
			u := p.peek()
			if u.kind == tEOF {
				return 0, &Error{Msg: "missing ')' for '(' at position " + strconv.Itoa(t.pos)}
			}
			return 0, &Error{Msg: "unexpected " + u.describe(), Pos: u.pos}
		}
		p.next()
		return v, nil
	case t.kind == tIdent:
		if !p.isOp("(") {
			switch t.text {
			case "pi":
				return math.Pi, nil
			case "e":
				return math.E, nil
			}
			return 0, &Error{Msg: "unknown name \"" + t.text + "\"", Pos: t.pos}
		}
		fn, ok := funcs[t.text]
		if !ok {
			return 0, &Error{Msg: "unknown function \"" + t.text + "\"", Pos: t.pos}
		}
		open := p.next()
		if err := p.enter(open); err != nil {
			return 0, err
		}
		defer p.leave()
		var args []float64
		if !p.isOp(")") {
			for {
				v, err := p.expr()
				if err != nil {
					return 0, err
				}
				args = append(args, v)
				if !p.isOp(",") {
					break
				}
				p.next()
			}
		}
		if !p.isOp(")") {
			u := p.peek()
			if u.kind == tEOF {
				return 0, &Error{Msg: "missing ')' for '(' at position " + strconv.Itoa(open.pos)}
			}
			return 0, &Error{Msg: "unexpected " + u.describe(), Pos: u.pos}
		}
		p.next()
		if len(args) < fn.min || (fn.max >= 0 && len(args) > fn.max) {
			want := strconv.Itoa(fn.min)
			if fn.max < 0 {
				want = "at least " + want
			}
			return 0, &Error{Msg: fmt.Sprintf("%s takes %s argument(s), got %d", t.text, want, len(args)), Pos: t.pos}
		}
		v, msg := fn.f(args)
		if msg != "" {
			return 0, &Error{Msg: msg, Pos: t.pos}
		}
		return v, nil
	case t.kind == tEOF:
		return 0, &Error{Msg: "unexpected end of expression"}
	}
	return 0, &Error{Msg: "unexpected " + t.describe(), Pos: t.pos}
}
