package firewall

import (
	"fmt"
	"strings"
)

// This file checks one SQL statement against an SQLPolicy, allowlist
// first:
//
//   - one statement only ("sql.multiple"; a trailing ';' is fine);
//   - its kind must be allowed ("sql.statement"): SELECT, WITH ... SELECT,
//     VALUES and TABLE are select; the statement after EXPLAIN must be
//     allowed too; a statement nested in parentheses (a data-modifying
//     CTE, WITH d AS (DELETE ...) SELECT ...) must be allowed as well;
//   - INTO is refused outside INSERT/REPLACE/MERGE INTO ("sql.into":
//     INTO OUTFILE, INTO DUMPFILE, SELECT INTO a table or a variable);
//   - row locks (FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE) need update
//     ("sql.lock");
//   - every function called must be in the built-in set of side-effect
//     free functions or the policy's ("sql.function"): pg_read_file,
//     pg_sleep, lo_import, dblink, load_file, sleep, benchmark, ... are
//     not;
//   - with Tables, every table named must be listed ("sql.table");
//   - UPDATE and DELETE need a WHERE whose top-level conjunction holds
//     "column = literal" or "column IN (literals)" on a key column, and no
//     top-level OR ("sql.where"): always-true predicates (1=1, 2>1, id=id,
//     id IS NOT NULL, ... OR TRUE) do not qualify, whatever their
//     spelling.

// sqlKinds are the statement kinds a policy may allow.
var sqlKinds = set("select", "insert", "update", "delete", "merge", "replace", "explain", "show", "create", "alter",
	"drop", "truncate", "grant", "revoke", "set", "reset", "use", "transaction", "vacuum", "analyze", "pragma",
	"attach", "detach", "copy", "call", "execute", "do", "load", "lock", "unlock", "handler", "prepare", "deallocate",
	"declare", "fetch", "close", "listen", "notify", "unlisten", "comment", "reindex", "cluster", "refresh", "import",
	"rename", "shutdown", "kill", "flush", "install", "uninstall", "optimize", "repair", "checkpoint", "discard",
	"security", "reassign", "checksum", "purge", "reset")

// sqlLeading maps a statement's first keyword to its kind.
var sqlLeading = map[string]string{
	"SELECT": "select", "VALUES": "select", "TABLE": "select", "INSERT": "insert", "UPDATE": "update",
	"DELETE": "delete", "MERGE": "merge", "REPLACE": "replace", "SHOW": "show", "BEGIN": "transaction",
	"START": "transaction", "COMMIT": "transaction", "ROLLBACK": "transaction", "END": "transaction",
	"ABORT": "transaction", "SAVEPOINT": "transaction", "RELEASE": "transaction", "EXEC": "execute",
}

// sqlSafeFunctions have no side effects: aggregates, window functions,
// string, number, date, JSON and array functions of PostgreSQL, MySQL and
// SQLite.
var sqlSafeFunctions = set(strings.Fields(`count sum avg min max coalesce nullif greatest least abs ceil ceiling floor
round trunc truncate mod power pow sqrt exp ln log log10 log2 sign pi degrees radians sin cos tan asin acos atan atan2
cot random rand lower upper lcase ucase length char_length character_length octet_length bit_length substr substring
trim ltrim rtrim btrim replace concat concat_ws position strpos instr locate left right lpad rpad reverse initcap
split_part repeat translate ascii chr char format to_char to_date to_timestamp to_number now current_date current_time
current_timestamp localtime localtimestamp date time datetime julianday strftime unixepoch date_trunc date_part
extract age make_date make_time make_timestamp make_interval date_add date_sub adddate subdate datediff date_format
year month day dayofweek dayofmonth dayofyear hour minute second week weekday quarter last_day str_to_date
from_unixtime unix_timestamp timestampdiff timestampadd curdate curtime cast convert ifnull iif if isnull nvl
array_agg string_agg group_concat json_agg jsonb_agg json_object_agg jsonb_object_agg json_build_object
jsonb_build_object json_build_array jsonb_build_array json_extract json_unquote json_object json_array
json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text json_array_length
jsonb_array_length json_typeof jsonb_typeof to_json to_jsonb row_to_json json_each jsonb_each json_array_elements
jsonb_array_elements jsonb_set json_valid json_contains json_keys unnest row_number rank dense_rank percent_rank
cume_dist ntile lag lead first_value last_value nth_value bool_and bool_or every bit_and bit_or stddev stddev_pop
stddev_samp std variance var_pop var_samp corr covar_pop covar_samp regr_slope regr_intercept percentile_cont
percentile_disc mode md5 sha1 sha2 hex unhex typeof quote printf regexp_replace regexp_matches regexp_match
regexp_like regexp_substr regexp_instr regexp_split_to_array regexp_split_to_table array_length array_position
cardinality array_to_string string_to_array width_bucket grouping cube rollup num_nonnulls num_nulls to_hex
date_bin justify_days justify_hours justify_interval isfinite scale trim_scale overlay char_length field elt
find_in_set makedate maketime period_add period_diff sec_to_time time_to_sec to_days from_days dayname monthname
utc_date utc_time utc_timestamp weekofyear yearweek microsecond any_value bit_count crc32 conv oct bin space strcmp
soundex difference least_common total group_concat`)...)

// sqlNotFunctions are keywords that may be followed by '('.
var sqlNotFunctions = set(strings.Fields(`SELECT FROM WHERE AND OR NOT XOR IN EXISTS ANY ALL SOME VALUES AS ON USING
OVER FILTER WITHIN GROUP BY ORDER HAVING LIMIT OFFSET UNION INTERSECT EXCEPT JOIN INNER OUTER CROSS NATURAL LATERAL
WHEN THEN ELSE CASE END RETURNING INTO SET TABLE WITH RECURSIVE MATERIALIZED DISTINCT IS NULL LIKE ILIKE BETWEEN SETS
ARRAY ROW CONFLICT MATCH AGAINST PARTITION FOR OF DO WINDOW ROWS RANGE GROUPS PRECEDING FOLLOWING ESCAPE TABLESAMPLE
ONLY RETURN`)...)

type sqlPolicy struct {
	dialect string
	kinds   map[string]bool
	tables  map[string]bool
	funcs   map[string]bool
	keys    map[string]bool
	allowed string // the allowed kinds, for messages
}

func compileSQL(s *SQLPolicy) *sqlPolicy {
	p := &sqlPolicy{dialect: s.Dialect, kinds: map[string]bool{}, funcs: map[string]bool{}, keys: map[string]bool{}}
	kinds := s.Statements
	if len(kinds) == 0 {
		kinds = []string{"select"}
	}
	for _, k := range kinds {
		p.kinds[strings.ToLower(k)] = true
	}
	p.allowed = strings.Join(sortedKeys(p.kinds), ", ")
	if len(s.Tables) > 0 {
		p.tables = map[string]bool{}
		for _, t := range s.Tables {
			p.tables[strings.ToLower(t)] = true
		}
	}
	for _, f := range s.Functions {
		p.funcs[strings.ToLower(f)] = true
	}
	for _, k := range s.Keys {
		p.keys[strings.ToLower(k)] = true
	}
	return p
}

// check checks one SQL text.
func (p *sqlPolicy) check(s string) *finding {
	toks, f := sqlLex(s, p.dialect)
	if f != nil {
		return f
	}
	var stmts [][]sqlTok
	start := 0
	for i, t := range toks {
		if t.op(";") {
			if i > start {
				stmts = append(stmts, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		stmts = append(stmts, toks[start:])
	}
	switch {
	case len(stmts) == 0:
		return &finding{RuleSQLSyntax, "no SQL statement"}
	case len(stmts) > 1:
		return &finding{RuleSQLMultiple, fmt.Sprintf("%d statements; one is allowed per call", len(stmts))}
	}
	return p.statement(stmts[0], 0)
}

// sqlKind returns a statement's kind, the index of its main keyword (after
// a WITH clause and leading parentheses), and the names of its CTEs.
func sqlKind(t []sqlTok) (string, int, map[string]bool) {
	i := 0
	for i < len(t) && t[i].op("(") {
		i++
	}
	if i >= len(t) || t[i].kind != sqlWord {
		return "", i, nil
	}
	switch kw := t[i].upper; kw {
	case "WITH":
		j, ctes := sqlWith(t, i+1)
		if j < 0 {
			return "", i, ctes
		}
		kind, at, _ := sqlKind(t[j:])
		return kind, j + at, ctes
	case "EXPLAIN", "DESCRIBE", "DESC":
		if j := sqlExplained(t, i+1); j >= 0 {
			return "explain", j, nil
		}
		return "show", i, nil
	default:
		if k, ok := sqlLeading[kw]; ok {
			return k, i, nil
		}
		if k := strings.ToLower(kw); sqlKinds[k] {
			return k, i, nil
		}
	}
	return "", i, nil
}

// sqlWith reads the CTE list after WITH at t[j]: [RECURSIVE] name
// [(columns)] AS [NOT] [MATERIALIZED] (body), ...; it returns the index
// of the main statement (or -1) and the CTE names.
func sqlWith(t []sqlTok, j int) (int, map[string]bool) {
	ctes := map[string]bool{}
	if j < len(t) && t[j].is("RECURSIVE") {
		j++
	}
	for j < len(t) {
		if t[j].kind == sqlWord || t[j].kind == sqlIdent {
			ctes[sqlName(t[j])] = true
		}
		j++
		if j < len(t) && t[j].op("(") { // column list
			j = sqlClose(t, j) + 1
		}
		for j < len(t) && (t[j].is("AS") || t[j].is("NOT") || t[j].is("MATERIALIZED")) {
			j++
		}
		if j >= len(t) || !t[j].op("(") {
			return -1, ctes
		}
		j = sqlClose(t, j) + 1
		if j >= len(t) || !t[j].op(",") {
			return j, ctes
		}
		j++
	}
	return -1, ctes
}

// sqlExplained returns the index of the statement explained by EXPLAIN
// options at t[j], or -1 when it describes a table.
func sqlExplained(t []sqlTok, j int) int {
	for j < len(t) && (t[j].is("ANALYZE") || t[j].is("ANALYSE") || t[j].is("VERBOSE") || t[j].is("EXTENDED") || t[j].is("PARTITIONS") || t[j].is("QUERY") || t[j].is("PLAN")) {
		j++
	}
	if j < len(t) && t[j].is("FORMAT") {
		j += 2
		if j < len(t) && t[j-1].op("=") {
			j++
		}
	}
	if j < len(t) && t[j].op("(") {
		j = sqlClose(t, j) + 1
	}
	if j < len(t) && t[j].kind == sqlWord {
		if _, ok := sqlLeading[t[j].upper]; ok || t[j].is("WITH") {
			return j
		}
	}
	return -1
}

// sqlClose returns the index of the ')' matching the '(' at t[i], or the
// last index.
func sqlClose(t []sqlTok, i int) int {
	depth := 0
	for j := i; j < len(t); j++ {
		switch {
		case t[j].op("("):
			depth++
		case t[j].op(")"):
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return len(t) - 1
}

// sqlName is how a name token compares: unquoted names fold to lower case,
// quoted ones keep theirs.
func sqlName(t sqlTok) string {
	if t.kind == sqlWord {
		return strings.ToLower(t.text)
	}
	return t.text
}

func (p *sqlPolicy) statement(t []sqlTok, depth int) *finding {
	if depth > 8 {
		return &finding{RuleTooComplex, "statements nested too deeply"}
	}
	kind, at, ctes := sqlKind(t)
	if kind == "" {
		what := "this"
		if at < len(t) {
			what = t[at].text
		}
		return &finding{RuleSQLStatement, fmt.Sprintf("%q does not start a statement the firewall knows", what)}
	}
	if !p.kinds[kind] {
		return &finding{RuleSQLStatement, fmt.Sprintf("%s statements are not allowed (allowed: %s)", strings.ToUpper(kind), p.allowed)}
	}
	switch kind {
	case "explain":
		return p.statement(t[at:], depth+1)
	case "select", "insert", "update", "delete", "merge", "replace":
	default:
		return nil // allowed by its keyword; the firewall does not read further
	}
	for _, check := range []func([]sqlTok, string, int, map[string]bool) *finding{p.nested, p.into, p.locks, p.functions, p.tableNames, p.where} {
		if f := check(t, kind, at, ctes); f != nil {
			return f
		}
	}
	return nil
}

// nested checks statements in parentheses (subqueries, CTE bodies).
func (p *sqlPolicy) nested(t []sqlTok, kind string, at int, _ map[string]bool) *finding {
	for i := 0; i+1 < len(t); i++ {
		if !t[i].op("(") || t[i+1].kind != sqlWord {
			continue
		}
		if _, ok := sqlLeading[t[i+1].upper]; !ok && !t[i+1].is("WITH") {
			continue
		}
		nk, _, _ := sqlKind(t[i+1:])
		if nk != "" && !p.kinds[nk] {
			return &finding{RuleSQLStatement, fmt.Sprintf("a nested %s statement is not allowed (allowed: %s)", strings.ToUpper(nk), p.allowed)}
		}
	}
	return nil
}

// into refuses INTO except right after INSERT, REPLACE or MERGE.
func (p *sqlPolicy) into(t []sqlTok, kind string, at int, _ map[string]bool) *finding {
	for i, tk := range t {
		if !tk.is("INTO") {
			continue
		}
		j := i - 1
		for j >= 0 && t[j].kind == sqlWord && (t[j].is("IGNORE") || t[j].is("LOW_PRIORITY") || t[j].is("DELAYED") || t[j].is("HIGH_PRIORITY")) {
			j--
		}
		if j >= 0 && (t[j].is("INSERT") || t[j].is("REPLACE") || t[j].is("MERGE")) {
			continue
		}
		what := "a table or variable"
		if i+1 < len(t) && t[i+1].kind == sqlWord {
			what = t[i+1].upper
		}
		return &finding{RuleSQLInto, fmt.Sprintf("INTO %s writes a file, a table or a variable", what)}
	}
	return nil
}

// locks refuses row locks in a read-only policy.
func (p *sqlPolicy) locks(t []sqlTok, kind string, at int, _ map[string]bool) *finding {
	if p.kinds["update"] {
		return nil
	}
	for i := 0; i+1 < len(t); i++ {
		if t[i].is("FOR") && (t[i+1].is("UPDATE") || t[i+1].is("SHARE") || t[i+1].is("NO") || t[i+1].is("KEY")) ||
			t[i].is("LOCK") && t[i+1].is("IN") {
			return &finding{RuleSQLLock, "locks rows, which a read-only policy does not allow"}
		}
	}
	return nil
}

// functions checks every function call against the allowed functions.
func (p *sqlPolicy) functions(t []sqlTok, kind string, at int, _ map[string]bool) *finding {
	for i, tk := range t {
		if (tk.kind != sqlWord && tk.kind != sqlIdent) || i+1 >= len(t) || !t[i+1].op("(") {
			continue
		}
		if tk.kind == sqlWord && sqlNotFunctions[tk.upper] {
			continue
		}
		start := i
		for start >= 2 && t[start-1].op(".") && (t[start-2].kind == sqlWord || t[start-2].kind == sqlIdent) {
			start -= 2
		}
		if start > 0 {
			prev := t[start-1]
			if prev.is("INTO") || prev.is("TABLE") || prev.is("AS") || prev.is("REFERENCES") || prev.op("::") || prev.is("UPDATE") || prev.is("INDEX") {
				continue // a table's column list, an alias's columns, a type
			}
		}
		if end := sqlClose(t, i+1); end+2 < len(t) && t[end+1].is("AS") && (t[end+2].op("(") || t[end+2].is("MATERIALIZED") || t[end+2].is("NOT")) {
			continue // a CTE's column list: name (cols) AS (...)
		}
		parts := make([]string, 0, 3)
		for j := start; j <= i; j += 2 {
			parts = append(parts, sqlName(t[j]))
		}
		name := strings.Join(parts, ".")
		if len(parts) == 1 && sqlSafeFunctions[name] || p.funcs[name] {
			continue
		}
		return &finding{RuleSQLFunction, fmt.Sprintf("the function %s is not allowed (it may read files, sleep, run SQL or change state); list it in the policy's functions to allow it", name)}
	}
	return nil
}

// sqlClauseEnd are keywords that end a FROM list.
var sqlClauseEnd = set(strings.Fields(`WHERE GROUP ORDER HAVING LIMIT OFFSET UNION INTERSECT EXCEPT WINDOW FOR RETURNING
ON USING SET VALUES SELECT FETCH INTO JOIN INNER LEFT RIGHT FULL CROSS NATURAL OUTER STRAIGHT_JOIN LOCK PROCEDURE`)...)

// tableNames checks every table a statement names against the policy's
// tables: after FROM (a list), JOIN, INTO, USING in a DELETE (a list), and
// UPDATE or TABLE at the head of a statement.
func (p *sqlPolicy) tableNames(t []sqlTok, kind string, at int, ctes map[string]bool) *finding {
	if p.tables == nil {
		return nil
	}
	inFunc := sqlInFunction(t)
	for i, tk := range t {
		head := i == at || i > 0 && t[i-1].op("(")
		isDistinctFrom := i >= 2 && t[i-1].is("DISTINCT") && (t[i-2].is("IS") || t[i-2].is("NOT"))
		switch {
		case tk.is("FROM") && !inFunc[i] && !isDistinctFrom, tk.is("USING") && kind == "delete":
			if f := p.tableList(t, i+1, true, ctes); f != nil {
				return f
			}
		case tk.is("JOIN"), tk.is("INTO"), tk.is("UPDATE") && head, tk.is("TABLE") && head:
			if f := p.tableList(t, i+1, false, ctes); f != nil {
				return f
			}
		}
	}
	return nil
}

// tableList checks the table reference at t[j] and, in a list, the ones
// after commas.
func (p *sqlPolicy) tableList(t []sqlTok, j int, list bool, ctes map[string]bool) *finding {
	for j < len(t) {
		for j < len(t) && (t[j].is("ONLY") || t[j].is("LATERAL")) {
			j++
		}
		next, f := p.tableRef(t, j, ctes)
		if f != nil || next < 0 || !list {
			return f
		}
		j = sqlSkipAlias(t, next)
		if j >= len(t) || !t[j].op(",") {
			return nil
		}
		j++
	}
	return nil
}

// tableRef checks one table reference at t[j] and returns the index after
// it, or -1 when there is none. Subqueries and table functions are
// checked on their own (as statements and functions).
func (p *sqlPolicy) tableRef(t []sqlTok, j int, ctes map[string]bool) (int, *finding) {
	switch {
	case j >= len(t):
		return -1, nil
	case t[j].op("("):
		return sqlClose(t, j) + 1, nil
	case t[j].kind != sqlWord && t[j].kind != sqlIdent:
		return -1, nil
	}
	parts := []string{sqlName(t[j])}
	for j+2 < len(t) && t[j+1].op(".") && (t[j+2].kind == sqlWord || t[j+2].kind == sqlIdent) {
		parts = append(parts, sqlName(t[j+2]))
		j += 2
	}
	if j+1 < len(t) && t[j+1].op("(") {
		return sqlClose(t, j+1) + 1, nil
	}
	name := strings.Join(parts, ".")
	if !p.tables[name] && !(len(parts) == 1 && (ctes[name] || name == "dual")) {
		return -1, &finding{RuleSQLTable, fmt.Sprintf("the table %s is not allowed", name)}
	}
	return j + 1, nil
}

// sqlSkipAlias skips "[AS] alias [(columns)]" at t[j].
func sqlSkipAlias(t []sqlTok, j int) int {
	if j < len(t) && t[j].is("AS") {
		j++
	}
	if j < len(t) && (t[j].kind == sqlIdent || t[j].kind == sqlWord && !sqlClauseEnd[t[j].upper]) {
		j++
	}
	if j < len(t) && t[j].op("(") {
		j = sqlClose(t, j) + 1
	}
	return j
}

// sqlInFunction marks the tokens inside a function call's parentheses
// (where FROM is an argument keyword: EXTRACT(YEAR FROM x)).
func sqlInFunction(t []sqlTok) []bool {
	in := make([]bool, len(t))
	var stack []bool
	for i, tk := range t {
		if len(stack) > 0 {
			in[i] = stack[len(stack)-1]
		}
		switch {
		case tk.op("("):
			fn := i > 0 && (t[i-1].kind == sqlWord && !sqlNotFunctions[t[i-1].upper] || t[i-1].kind == sqlIdent)
			stack = append(stack, fn)
		case tk.op(")"):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	return in
}

// where requires a keyed WHERE on UPDATE and DELETE.
func (p *sqlPolicy) where(t []sqlTok, kind string, at int, _ map[string]bool) *finding {
	if kind != "update" && kind != "delete" {
		return nil
	}
	depth, w := 0, -1
	for i := at; i < len(t); i++ {
		switch {
		case t[i].op("("):
			depth++
		case t[i].op(")"):
			depth--
		case depth == 0 && t[i].is("WHERE"):
			w = i
		}
		if w >= 0 {
			break
		}
	}
	if w < 0 {
		return &finding{RuleSQLWhere, strings.ToUpper(kind) + " without WHERE changes every row"}
	}
	end := len(t)
	depth = 0
	for i := w + 1; i < len(t); i++ {
		switch {
		case t[i].op("("):
			depth++
		case t[i].op(")"):
			depth--
		case depth == 0 && (t[i].is("RETURNING") || t[i].is("ORDER") || t[i].is("LIMIT")):
			end = i
		}
		if end != len(t) {
			break
		}
	}
	if !p.keyed(t[w+1 : end]) {
		what := "a key column"
		if len(p.keys) > 0 {
			what = "one of the key columns " + strings.Join(sortedKeys(p.keys), ", ")
		}
		return &finding{RuleSQLWhere, fmt.Sprintf("%s needs a WHERE that matches %s against literal values (col = 7, col IN (1, 2)) and no top-level OR; this one may match every row", strings.ToUpper(kind), what)}
	}
	return nil
}

// keyed reports whether a condition's top-level conjunction holds a key
// equality and no disjunction.
func (p *sqlPolicy) keyed(c []sqlTok) bool {
	for len(c) >= 2 && c[0].op("(") && sqlClose(c, 0) == len(c)-1 {
		c = c[1 : len(c)-1]
	}
	var conj [][]sqlTok
	depth, start := 0, 0
	for i, tk := range c {
		switch {
		case tk.op("("):
			depth++
		case tk.op(")"):
			depth--
		case depth == 0 && (tk.is("OR") || tk.is("XOR") || tk.op("||") && p.dialect != dialectPostgres && p.dialect != dialectSQLite):
			return false
		case depth == 0 && (tk.is("AND") || tk.op("&&")):
			conj = append(conj, c[start:i])
			start = i + 1
		}
	}
	conj = append(conj, c[start:])
	for _, k := range conj {
		if p.keyEquality(k) {
			return true
		}
	}
	return false
}

// keyEquality reports whether c is "col = literal", "literal = col" or
// "col IN (literal, ...)" on a key column.
func (p *sqlPolicy) keyEquality(c []sqlTok) bool {
	col, n := sqlColumn(c)
	if n > 0 && n < len(c) {
		rest := c[n:]
		switch {
		case rest[0].op("=") && sqlLiteral(rest[1:]):
			return p.isKey(col)
		case rest[0].is("IN") && len(rest) >= 3 && rest[1].op("(") && sqlClose(rest, 1) == len(rest)-1:
			items := rest[2 : len(rest)-1]
			for len(items) > 0 {
				k := 0
				for k < len(items) && !items[k].op(",") {
					k++
				}
				if !sqlLiteral(items[:k]) {
					return false
				}
				if k == len(items) {
					break
				}
				items = items[k+1:]
			}
			return p.isKey(col)
		}
	}
	// literal = col
	for k := 1; k < len(c); k++ {
		if c[k].op("=") && sqlLiteral(c[:k]) {
			col, n := sqlColumn(c[k+1:])
			return n == len(c)-k-1 && n > 0 && p.isKey(col)
		}
	}
	return false
}

func (p *sqlPolicy) isKey(col string) bool {
	if len(p.keys) == 0 {
		return true
	}
	if i := strings.LastIndexByte(col, '.'); i >= 0 {
		col = col[i+1:]
	}
	return p.keys[col]
}

// sqlColumn reads a column reference (name, or qualified) at the start of
// c and returns it and the tokens it used (0 if there is none).
func sqlColumn(c []sqlTok) (string, int) {
	if len(c) == 0 || !(c[0].kind == sqlIdent || c[0].kind == sqlWord && !sqlNotColumn[c[0].upper]) {
		return "", 0
	}
	parts := []string{sqlName(c[0])}
	n := 1
	for n+1 < len(c) && c[n].op(".") && (c[n+1].kind == sqlWord || c[n+1].kind == sqlIdent) {
		parts = append(parts, sqlName(c[n+1]))
		n += 2
	}
	if n < len(c) && c[n].op("(") {
		return "", 0 // a function call
	}
	return strings.Join(parts, "."), n
}

var sqlNotColumn = set(strings.Fields(`NULL TRUE FALSE NOT EXISTS CASE SELECT DEFAULT CURRENT_DATE CURRENT_TIME
CURRENT_TIMESTAMP CURRENT_USER SESSION_USER USER LOCALTIME LOCALTIMESTAMP INTERVAL DATE TIMESTAMP`)...)

// sqlLiteral reports whether c is one literal: a number (with a sign), a
// string, or a parameter.
func sqlLiteral(c []sqlTok) bool {
	if len(c) == 2 && (c[0].op("-") || c[0].op("+")) && c[1].kind == sqlNumber {
		return true
	}
	return len(c) == 1 && (c[0].kind == sqlNumber || c[0].kind == sqlString || c[0].kind == sqlParam)
}
