package firewall

import (
	"fmt"
	"strings"
)

// This file lexes SQL the way the database does. Dialects disagree on
// what ends a string or a comment: MySQL escapes quotes with a backslash
// inside strings, PostgreSQL (standard_conforming_strings) does not; MySQL
// needs a space after "--" and has "#" comments, PostgreSQL nests block
// comments and has dollar quotes; MySQL runs /*! ... */ as code. A
// firewall that lexes differently from the database sees other statements
// than the database runs, so the dialect is part of the policy, and
// without one (any) whatever dialects read differently is refused.

const (
	dialectAny      = ""
	dialectPostgres = "postgres"
	dialectMySQL    = "mysql"
	dialectSQLite   = "sqlite"
)

// SQL rules.
const (
	RuleSQLSyntax    = "sql.syntax"
	RuleSQLComment   = "sql.comment"
	RuleSQLMultiple  = "sql.multiple"
	RuleSQLStatement = "sql.statement"
	RuleSQLFunction  = "sql.function"
	RuleSQLTable     = "sql.table"
	RuleSQLInto      = "sql.into"
	RuleSQLWhere     = "sql.where"
	RuleSQLLock      = "sql.lock"
)

// Token kinds.
const (
	sqlWord   = 'w' // unquoted keyword or identifier (upper holds its upper case)
	sqlIdent  = 'i' // quoted identifier
	sqlString = 's'
	sqlNumber = 'n'
	sqlParam  = 'p' // ?, $1, :name
	sqlOp     = 'o'
)

type sqlTok struct {
	kind  byte
	text  string // as written (without quotes for identifiers)
	upper string // upper case of a word
}

func (t sqlTok) is(kw string) bool { return t.kind == sqlWord && t.upper == kw }
func (t sqlTok) op(s string) bool  { return t.kind == sqlOp && t.text == s }

// sqlLexer is the state of lexing one text.
type sqlLexer struct {
	s, dialect string
	i          int
	toks       []sqlTok
}

// sqlLex splits s into tokens, dropping whitespace and comments.
func sqlLex(s, dialect string) ([]sqlTok, *finding) {
	l := &sqlLexer{s: s, dialect: dialect}
	lineStart := true
	for l.i < len(s) {
		c := s[l.i]
		switch {
		case c == '\n':
			lineStart = true
			l.i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			l.i++
			continue
		case c < 0x20 || c == 0x7f:
			return nil, &finding{RuleSQLSyntax, fmt.Sprintf("the control character %q is not SQL", c)}
		case lineStart && c == '.' && l.i+1 < len(s) && isSQLWordStart(s[l.i+1]) && (dialect == dialectSQLite || dialect == dialectAny):
			return nil, &finding{RuleSQLSyntax, "a line starts with a dot command (sqlite3 .shell, .system), which is not SQL"}
		}
		lineStart = false
		if f := l.next(c); f != nil {
			return nil, f
		}
	}
	depth := 0
	for _, t := range l.toks {
		switch {
		case t.op("("):
			if depth++; depth > maxSQLDepth {
				return nil, &finding{RuleTooComplex, fmt.Sprintf("parentheses nested deeper than %d", maxSQLDepth)}
			}
		case t.op(")"):
			depth--
		}
	}
	return l.toks, nil
}

// maxSQLDepth bounds the nesting of parentheses, which bounds the work of
// the checks that match them.
const maxSQLDepth = 64

func (l *sqlLexer) add(kind byte, text string) {
	t := sqlTok{kind: kind, text: text}
	if kind == sqlWord {
		t.upper = strings.ToUpper(text)
	}
	l.toks = append(l.toks, t)
}

// next lexes the token (or comment) that starts with c at l.i.
func (l *sqlLexer) next(c byte) *finding {
	s := l.s
	switch {
	case c == '-' && strings.HasPrefix(s[l.i:], "--"):
		return l.dashes()
	case c == '#':
		return l.hash()
	case c == '/' && strings.HasPrefix(s[l.i:], "/*"):
		if strings.HasPrefix(s[l.i:], "/*!") || strings.HasPrefix(s[l.i:], "/*M!") {
			return &finding{RuleSQLComment, "MySQL runs /*! ... */ comments as SQL"}
		}
		end, f := sqlBlockComment(s, l.i, l.dialect)
		l.i = end
		return f
	case c == '\'' || c == '"' || c == '`' || c == '[' && l.dialect == dialectSQLite:
		return l.quoted(c)
	case c == '$':
		tok, end, f := sqlDollar(s, l.i, l.dialect)
		l.toks, l.i = append(l.toks, tok), end
		return f
	case c == '\\':
		return &finding{RuleSQLSyntax, "a backslash outside a string is not SQL (psql runs \\! as a shell command)"}
	case c >= '0' && c <= '9' || c == '.' && l.i+1 < len(s) && s[l.i+1] >= '0' && s[l.i+1] <= '9':
		j := l.i + 1
		for j < len(s) && (isSQLWordByte(s[j]) || s[j] == '.' || (s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E')) {
			j++
		}
		l.add(sqlNumber, s[l.i:j])
		l.i = j
	case isSQLWordStart(c):
		l.add(sqlWord, l.word(l.i))
	case c == '?':
		l.add(sqlParam, "?")
		l.i++
	case c == ':' && l.i+1 < len(s) && isSQLWordStart(s[l.i+1]) && (l.i == 0 || s[l.i-1] != ':'):
		start := l.i
		l.word(l.i + 1)
		l.add(sqlParam, s[start:l.i])
	default:
		op := string(c)
		for _, m := range []string{"->>", "<=>", "::", "||", "&&", "<=", ">=", "<>", "!=", ":=", "->"} {
			if strings.HasPrefix(s[l.i:], m) {
				op = m
				break
			}
		}
		l.add(sqlOp, op)
		l.i += len(op)
	}
	return nil
}

// word consumes a word starting at from and returns it.
func (l *sqlLexer) word(from int) string {
	j := from + 1
	for j < len(l.s) && isSQLWordByte(l.s[j]) {
		j++
	}
	w := l.s[from:j]
	l.i = j
	return w
}

// dashes lexes "--": a comment, or in MySQL without a following space two
// minus signs.
func (l *sqlLexer) dashes() *finding {
	after := byte(' ')
	if l.i+2 < len(l.s) {
		after = l.s[l.i+2]
	}
	spaced := after == ' ' || after == '\t' || after == '\n' || after == '\r'
	switch {
	case l.dialect == dialectMySQL && !spaced:
		l.add(sqlOp, "-")
		l.i++
		return nil
	case l.dialect == dialectAny && !spaced:
		return &finding{RuleSQLComment, "\"--\" without a space is a comment in PostgreSQL and SQLite but two minus signs in MySQL"}
	}
	l.toEndOfLine()
	return nil
}

// hash lexes "#": a comment in MySQL, an operator elsewhere.
func (l *sqlLexer) hash() *finding {
	switch l.dialect {
	case dialectMySQL:
		l.toEndOfLine()
	case dialectAny:
		return &finding{RuleSQLComment, "\"#\" starts a comment in MySQL and is an operator in PostgreSQL"}
	default:
		l.add(sqlOp, "#")
		l.i++
	}
	return nil
}

func (l *sqlLexer) toEndOfLine() {
	for l.i < len(l.s) && l.s[l.i] != '\n' {
		l.i++
	}
}

// quoted lexes a quoted string or identifier opened by q.
func (l *sqlLexer) quoted(q byte) *finding {
	if q == '[' { // SQLite
		j := strings.IndexByte(l.s[l.i+1:], ']')
		if j < 0 {
			return &finding{RuleSQLSyntax, "unterminated [identifier]"}
		}
		l.add(sqlIdent, l.s[l.i+1:l.i+1+j])
		l.i += j + 2
		return nil
	}
	escapes, kind := false, byte(sqlIdent)
	switch q {
	case '\'':
		kind = sqlString
		// MySQL escapes with backslashes; PostgreSQL only in E'...'
		escapes = l.dialect == dialectMySQL || l.dialect == dialectPostgres && l.ePrefix()
	case '"':
		escapes = l.dialect == dialectMySQL
		if l.dialect == dialectMySQL {
			kind = sqlString
		}
	}
	val, end, f := sqlQuoted(l.s, l.i, q, escapes, l.dialect)
	if f != nil {
		return f
	}
	l.add(kind, val)
	l.i = end
	return nil
}

// ePrefix reports whether the string at l.i has PostgreSQL's E prefix,
// and drops the prefix's token.
func (l *sqlLexer) ePrefix() bool {
	n := len(l.toks)
	if n == 0 || l.toks[n-1].kind != sqlWord || l.toks[n-1].upper != "E" || l.i == 0 || (l.s[l.i-1] != 'E' && l.s[l.i-1] != 'e') {
		return false
	}
	l.toks = l.toks[:n-1]
	return true
}

func isSQLWordStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isSQLWordByte(c byte) bool {
	return isSQLWordStart(c) || c >= '0' && c <= '9' || c == '$'
}

// sqlBlockComment returns the index after the block comment at s[i:].
func sqlBlockComment(s string, i int, dialect string) (int, *finding) {
	depth := 0
	for j := i; j+1 < len(s); {
		switch {
		case s[j] == '/' && s[j+1] == '*':
			if depth > 0 {
				switch dialect {
				case dialectAny:
					return 0, &finding{RuleSQLComment, "a comment inside a comment ends early in MySQL and SQLite but nests in PostgreSQL"}
				case dialectPostgres:
					depth++
				}
			} else {
				depth = 1
			}
			j += 2
		case s[j] == '*' && s[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j, nil
			}
		default:
			j++
		}
	}
	return 0, &finding{RuleSQLComment, "unterminated comment"}
}

// sqlQuoted reads a quoted string or identifier; the quote is doubled to
// escape it, and with escapes a backslash escapes the next character.
func sqlQuoted(s string, i int, q byte, escapes bool, dialect string) (string, int, *finding) {
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == q:
			if j+1 < len(s) && s[j+1] == q {
				b.WriteByte(q)
				j++
				continue
			}
			return b.String(), j + 1, nil
		case c == '\\' && escapes:
			if j+1 < len(s) {
				j++
				b.WriteByte(s[j])
			}
			continue
		case c == '\\' && dialect == dialectAny:
			return "", 0, &finding{RuleSQLSyntax, "a backslash in a quoted string escapes the quote in MySQL but not in PostgreSQL or SQLite"}
		}
		b.WriteByte(c)
	}
	return "", 0, &finding{RuleSQLSyntax, "unterminated quoted string or identifier"}
}

// sqlDollar reads what starts with '$': a parameter ($1), or in
// PostgreSQL a dollar-quoted string ($$...$$, $tag$...$tag$).
func sqlDollar(s string, i int, dialect string) (sqlTok, int, *finding) {
	j := i + 1
	if j < len(s) && s[j] >= '0' && s[j] <= '9' {
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return sqlTok{kind: sqlParam, text: s[i:j]}, j, nil
	}
	for j < len(s) && (isSQLWordStart(s[j]) || s[j] >= '0' && s[j] <= '9') {
		j++
	}
	if j < len(s) && s[j] == '$' {
		if dialect != dialectPostgres {
			return sqlTok{}, 0, &finding{RuleSQLSyntax, "dollar quoting ($$...$$) is PostgreSQL's; other databases read it differently"}
		}
		tag := s[i : j+1]
		end := strings.Index(s[j+1:], tag)
		if end < 0 {
			return sqlTok{}, 0, &finding{RuleSQLSyntax, "unterminated dollar-quoted string"}
		}
		return sqlTok{kind: sqlString, text: s[j+1 : j+1+end]}, j + 1 + end + len(tag), nil
	}
	if dialect == dialectSQLite && j > i+1 {
		return sqlTok{kind: sqlParam, text: s[i:j]}, j, nil
	}
	return sqlTok{}, 0, &finding{RuleSQLSyntax, "unexpected '$'"}
}
