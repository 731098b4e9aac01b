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

// sqlLex splits s into tokens, dropping whitespace and comments.
func sqlLex(s, dialect string) ([]sqlTok, *finding) {
	var toks []sqlTok
	lineStart := true
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			lineStart = true
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			i++
			continue
		case c < 0x20 || c == 0x7f:
			return nil, &finding{RuleSQLSyntax, fmt.Sprintf("the control character %q is not SQL", c)}
		}
		if lineStart && c == '.' && i+1 < len(s) && isSQLWordStart(s[i+1]) && (dialect == dialectSQLite || dialect == dialectAny) {
			return nil, &finding{RuleSQLSyntax, "a line starts with a dot command (sqlite3 .shell, .system), which is not SQL"}
		}
		lineStart = false
		switch {
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			after := byte(' ')
			if i+2 < len(s) {
				after = s[i+2]
			}
			spaced := after == ' ' || after == '\t' || after == '\n' || after == '\r' || i+2 == len(s)
			if dialect == dialectMySQL && !spaced {
				toks = append(toks, sqlTok{kind: sqlOp, text: "-"})
				i++
				continue
			}
			if dialect == dialectAny && !spaced {
				return nil, &finding{RuleSQLComment, "\"--\" without a space is a comment in PostgreSQL and SQLite but two minus signs in MySQL"}
			}
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '#' && dialect == dialectMySQL:
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '#' && dialect == dialectAny:
			return nil, &finding{RuleSQLComment, "\"#\" starts a comment in MySQL and is an operator in PostgreSQL"}
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			if strings.HasPrefix(s[i:], "/*!") || strings.HasPrefix(s[i:], "/*M!") {
				return nil, &finding{RuleSQLComment, "MySQL runs /*! ... */ comments as SQL"}
			}
			end, f := sqlBlockComment(s, i, dialect)
			if f != nil {
				return nil, f
			}
			i = end
		case c == '\'':
			escapes := dialect == dialectMySQL || (dialect == dialectPostgres && len(toks) > 0 && toks[len(toks)-1].kind == sqlWord && toks[len(toks)-1].upper == "E" && i > 0 && (s[i-1] == 'E' || s[i-1] == 'e'))
			if escapes && dialect == dialectPostgres {
				toks = toks[:len(toks)-1] // the E prefix
			}
			val, end, f := sqlQuoted(s, i, '\'', escapes, dialect)
			if f != nil {
				return nil, f
			}
			toks = append(toks, sqlTok{kind: sqlString, text: val})
			i = end
		case c == '"':
			val, end, f := sqlQuoted(s, i, '"', dialect == dialectMySQL, dialect)
			if f != nil {
				return nil, f
			}
			kind := byte(sqlIdent)
			if dialect == dialectMySQL {
				kind = sqlString
			}
			toks = append(toks, sqlTok{kind: kind, text: val})
			i = end
		case c == '`':
			val, end, f := sqlQuoted(s, i, '`', false, dialect)
			if f != nil {
				return nil, f
			}
			toks = append(toks, sqlTok{kind: sqlIdent, text: val})
			i = end
		case c == '[' && dialect == dialectSQLite:
			j := strings.IndexByte(s[i+1:], ']')
			if j < 0 {
				return nil, &finding{RuleSQLSyntax, "unterminated [identifier]"}
			}
			toks = append(toks, sqlTok{kind: sqlIdent, text: s[i+1 : i+1+j]})
			i += j + 2
		case c == '$':
			tok, end, f := sqlDollar(s, i, dialect)
			if f != nil {
				return nil, f
			}
			toks = append(toks, tok)
			i = end
		case c == '\\':
			return nil, &finding{RuleSQLSyntax, "a backslash outside a string is not SQL (psql runs \\! as a shell command)"}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < len(s) && (isSQLWordByte(s[j]) || s[j] == '.' || (s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			toks = append(toks, sqlTok{kind: sqlNumber, text: s[i:j]})
			i = j
		case isSQLWordStart(c):
			j := i + 1
			for j < len(s) && isSQLWordByte(s[j]) {
				j++
			}
			w := s[i:j]
			toks = append(toks, sqlTok{kind: sqlWord, text: w, upper: strings.ToUpper(w)})
			i = j
		case c == '?':
			toks = append(toks, sqlTok{kind: sqlParam, text: "?"})
			i++
		case c == ':' && i+1 < len(s) && isSQLWordStart(s[i+1]) && (i == 0 || s[i-1] != ':'):
			j := i + 1
			for j < len(s) && isSQLWordByte(s[j]) {
				j++
			}
			toks = append(toks, sqlTok{kind: sqlParam, text: s[i:j]})
			i = j
		default:
			op := string(c)
			for _, m := range []string{"->>", "<=>", "::", "||", "&&", "<=", ">=", "<>", "!=", ":=", "->"} {
				if strings.HasPrefix(s[i:], m) {
					op = m
					break
				}
			}
			toks = append(toks, sqlTok{kind: sqlOp, text: op})
			i += len(op)
		}
	}
	return toks, nil
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
