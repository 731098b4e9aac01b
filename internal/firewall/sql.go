package firewall

import (
	"strings"
)

// This file recognises destructive SQL. A string is examined as SQL when
// the tool is an SQL tool, or when its key names a query (query, sql,
// statement) and it parses as an SQL statement. Prose such as "delete from
// the shopping list" does not parse (trailing words after the table name),
// so it passes; in an SQL tool the check is lenient and any destructive
// statement is refused, well-formed or not.

type sqlTok struct {
	text  string // upper-cased for words, raw for punctuation
	ident bool   // word or quoted identifier
}

// sqlLex splits SQL into words, quoted identifiers and punctuation,
// dropping comments and string literals (a literal becomes the token "'").
func sqlLex(s string) []sqlTok {
	var toks []sqlTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-', c == '#':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return toks
			}
			i += j
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return toks
			}
			i += j + 4
			// a comment separates tokens like a space
		case c == '\'':
			j := i + 1
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				if s[j] == '\\' {
					j++
				}
				j++
			}
			toks = append(toks, sqlTok{text: "'"})
			i = j + 1
		case c == '"' || c == '`' || c == '[':
			end := byte('"')
			if c == '`' {
				end = '`'
			} else if c == '[' {
				end = ']'
			}
			j := strings.IndexByte(s[i+1:], end)
			if j < 0 {
				j = len(s) - i - 1
			}
			toks = append(toks, sqlTok{text: strings.ToUpper(s[i+1 : i+1+j]), ident: true})
			i += j + 2
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, sqlTok{text: strings.ToUpper(s[i:j]), ident: true})
			i = j
		default:
			toks = append(toks, sqlTok{text: string(c)})
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// sqlStatements splits tokens at top-level ';'.
func sqlStatements(toks []sqlTok) [][]sqlTok {
	var out [][]sqlTok
	start := 0
	for i, t := range toks {
		if t.text == ";" {
			if i > start {
				out = append(out, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

var sqlVerbs = set("SELECT", "INSERT", "UPDATE", "DELETE", "DROP", "TRUNCATE", "ALTER", "CREATE", "WITH",
	"REPLACE", "MERGE", "GRANT", "REVOKE", "PRAGMA", "ATTACH", "DETACH", "EXPLAIN", "VACUUM", "BEGIN", "COMMIT",
	"ROLLBACK", "SHOW", "DESCRIBE", "USE", "SET", "CALL", "EXEC", "EXECUTE", "COPY")

// checkSQL examines s as SQL. strict requires every destructive statement
// to be well formed before it counts (argument-name context); lenient (SQL
// tool) refuses any destructive statement.
func checkSQL(s string, strict bool) *finding {
	for _, st := range sqlStatements(sqlLex(s)) {
		if f := checkStatement(st, strict); f != nil {
			return f
		}
	}
	return nil
}

// name parses a (possibly dotted) identifier at toks[i] and returns the
// index after it, or -1.
func sqlName(toks []sqlTok, i int) int {
	if i >= len(toks) || !toks[i].ident {
		return -1
	}
	i++
	for i+1 < len(toks) && toks[i].text == "." && toks[i+1].ident {
		i += 2
	}
	return i
}

func hasTopLevel(toks []sqlTok, kw string) bool {
	depth := 0
	for _, t := range toks {
		switch t.text {
		case "(":
			depth++
		case ")":
			depth--
		case kw:
			if depth == 0 {
				return true
			}
		}
	}
	return false
}

func checkStatement(t []sqlTok, strict bool) *finding {
	if len(t) == 0 {
		return nil
	}
	// statements that run operating-system commands
	for i, tk := range t {
		if tk.text == "XP_CMDSHELL" || tk.text == "SYS_EXEC" || tk.text == "SYS_EVAL" {
			return &finding{"sql.command_exec", strings.ToLower(tk.text) + " runs an operating-system command"}
		}
		if tk.text == "PROGRAM" && i > 0 && (t[i-1].text == "FROM" || t[i-1].text == "TO") && t[0].text == "COPY" {
			return &finding{"sql.command_exec", "COPY ... PROGRAM runs an operating-system command"}
		}
	}
	// skip a leading WITH ... AS (...) clause list for DELETE/UPDATE
	verb := t[0].text
	if verb == "WITH" {
		depth := 0
		for i, tk := range t {
			if tk.text == "(" {
				depth++
			} else if tk.text == ")" {
				depth--
			} else if depth == 0 && (tk.text == "DELETE" || tk.text == "UPDATE") && i > 0 {
				return checkStatement(t[i:], strict)
			}
		}
		return nil
	}
	switch verb {
	case "DROP":
		i := 1
		if i < len(t) && (t[i].text == "TEMPORARY" || t[i].text == "TEMP") {
			i++
		}
		if i >= len(t) {
			return nil
		}
		obj := t[i].text
		if obj != "TABLE" && obj != "DATABASE" && obj != "SCHEMA" {
			return nil
		}
		if strict {
			j := i + 1
			if j+1 < len(t) && t[j].text == "IF" && t[j+1].text == "EXISTS" {
				j += 2
			}
			if j = sqlName(t, j); j < 0 {
				return nil
			}
			for j+1 < len(t) && t[j].text == "," {
				if j = sqlName(t, j+1); j < 0 {
					return nil
				}
			}
			if !onlyTrailing(t[j:], "CASCADE", "RESTRICT", "PURGE") {
				return nil
			}
		}
		return &finding{"sql.drop", "DROP " + obj}
	case "TRUNCATE":
		if strict {
			j := 1
			if j < len(t) && t[j].text == "TABLE" {
				j++
			}
			if j = sqlName(t, j); j < 0 {
				return nil
			}
			for j+1 < len(t) && t[j].text == "," {
				if j = sqlName(t, j+1); j < 0 {
					return nil
				}
			}
			if !onlyTrailing(t[j:], "CASCADE", "RESTRICT", "RESTART", "CONTINUE", "IDENTITY") {
				return nil
			}
		}
		return &finding{"sql.truncate", "TRUNCATE empties a table"}
	case "DELETE":
		if hasTopLevel(t, "WHERE") {
			if tautology(t) {
				return &finding{"sql.delete_all", "DELETE with an always-true WHERE"}
			}
			return nil
		}
		if strict {
			j := 1
			if j >= len(t) || t[j].text != "FROM" {
				return nil
			}
			if j = sqlName(t, j+1); j < 0 {
				return nil
			}
			if j < len(t) && t[j].text == "AS" {
				j++
			}
			if j < len(t) && t[j].ident && !sqlClause[t[j].text] {
				j++ // alias
			}
			if j < len(t) && !sqlClause[t[j].text] {
				return nil
			}
		}
		return &finding{"sql.delete_all", "DELETE without WHERE removes every row"}
	case "UPDATE":
		if !hasTopLevel(t, "SET") {
			return nil
		}
		if hasTopLevel(t, "WHERE") {
			if tautology(t) {
				return &finding{"sql.update_all", "UPDATE with an always-true WHERE"}
			}
			return nil
		}
		if strict {
			j := sqlName(t, 1)
			if j < 0 || j >= len(t) || t[j].text != "SET" || j+2 >= len(t) || t[j+2].text != "=" {
				return nil
			}
		}
		return &finding{"sql.update_all", "UPDATE without WHERE changes every row"}
	case "ALTER":
		if len(t) < 3 {
			return nil
		}
		switch t[1].text {
		case "TABLE", "DATABASE", "SCHEMA":
		default:
			return nil
		}
		j := 2
		if j+1 < len(t) && t[j].text == "IF" && t[j+1].text == "EXISTS" {
			j += 2
		}
		if j < len(t) && t[j].text == "ONLY" {
			j++
		}
		if j = sqlName(t, j); j < 0 || j >= len(t) {
			return nil
		}
		if strict && !alterActions[t[j].text] {
			return nil
		}
		// DROP as the action of any top-level clause
		depth, clauseStart := 0, true
		for _, tk := range t[j:] {
			switch {
			case tk.text == "(":
				depth++
			case tk.text == ")":
				depth--
			case depth == 0 && tk.text == ",":
				clauseStart = true
				continue
			case clauseStart && tk.text == "DROP":
				return &finding{"sql.alter_drop", "ALTER ... DROP removes a column or constraint"}
			}
			clauseStart = false
		}
		if !strict && hasTopLevel(t, "DROP") {
			return &finding{"sql.alter_drop", "ALTER ... DROP removes a column or constraint"}
		}
	}
	return nil
}

var sqlClause = set("WHERE", "USING", "RETURNING", "ORDER", "LIMIT", "OUTPUT")

var alterActions = set("DROP", "ADD", "RENAME", "ALTER", "MODIFY", "CHANGE", "SET", "OWNER", "ENABLE", "DISABLE", "ATTACH", "DETACH")

func onlyTrailing(t []sqlTok, allowed ...string) bool {
	a := set(allowed...)
	for _, tk := range t {
		if !a[tk.text] {
			return false
		}
	}
	return true
}

// tautology spots WHERE 1=1, WHERE TRUE, WHERE 'a'='a', WHERE x=x, WHERE 1
// and OR-ed variants of them.
func tautology(t []sqlTok) bool {
	for i, tk := range t {
		if tk.text != "WHERE" && tk.text != "OR" {
			continue
		}
		r := t[i+1:]
		if len(r) >= 1 && (r[0].text == "TRUE" || r[0].text == "1") && (len(r) == 1 || r[1].text == "OR" || r[1].text == ")") {
			return true
		}
		if len(r) >= 3 && r[1].text == "=" && r[0].text == r[2].text && (len(r) == 3 || !(r[3].text == ".")) {
			return true
		}
	}
	return false
}

// looksLikeSQL reports whether s starts with an SQL verb.
func looksLikeSQL(s string) bool {
	toks := sqlLex(s)
	return len(toks) > 0 && sqlVerbs[toks[0].text]
}
