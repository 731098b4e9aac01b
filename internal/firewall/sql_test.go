package firewall

import "testing"

// The same text is one statement in one dialect and two in another: the
// firewall must lex it as the database will.
func TestSQLDialects(t *testing.T) {
	tests := []struct {
		sql                          string
		any, postgres, mysql, sqlite string // rule, "" = allowed
	}{
		{`SELECT 'a\'; DROP TABLE t; -- '`, RuleSQLSyntax, RuleSQLMultiple, "", RuleSQLMultiple},
		{`SELECT '\'' ; DROP TABLE t; -- '`, RuleSQLSyntax, "", RuleSQLMultiple, ""}, // standard SQL: \ then a doubled quote
		{"SELECT 1 --x\n", RuleSQLComment, "", "", ""},
		{"SELECT 1--1; DROP TABLE t", RuleSQLComment, "", RuleSQLMultiple, ""},
		{"SELECT 1 # x; DROP TABLE t", RuleSQLComment, RuleSQLMultiple, "", RuleSQLMultiple},
		{"SELECT 1 /* a /* b */ ; DROP TABLE t; */", RuleSQLComment, "", RuleSQLMultiple, RuleSQLMultiple},
		{"SELECT $$a;b$$", RuleSQLSyntax, "", RuleSQLSyntax, RuleSQLSyntax},
		{"SELECT E'\\''; DROP TABLE t; --'", RuleSQLSyntax, RuleSQLMultiple, RuleSQLSyntax, ""},
		{"SELECT 1 /*!50000 , 2 */", RuleSQLComment, RuleSQLComment, RuleSQLComment, RuleSQLComment},
		{`SELECT "a\"; DROP TABLE t; -- "`, RuleSQLSyntax, RuleSQLMultiple, "", RuleSQLMultiple},
		{"SELECT [a;b]", RuleSQLMultiple, RuleSQLMultiple, RuleSQLMultiple, ""},
		{".shell id", RuleSQLSyntax, RuleSQLStatement, RuleSQLStatement, RuleSQLSyntax},
		{"\\! id", RuleSQLSyntax, RuleSQLSyntax, RuleSQLSyntax, RuleSQLSyntax},
	}
	for _, tt := range tests {
		for _, d := range []struct{ dialect, want string }{{"", tt.any}, {dialectPostgres, tt.postgres}, {dialectMySQL, tt.mysql}, {dialectSQLite, tt.sqlite}} {
			p := compileSQL(&SQLPolicy{Dialect: d.dialect})
			got := p.check(tt.sql)
			switch {
			case d.want == "" && got != nil:
				t.Errorf("%q in %q: refused: %v", tt.sql, d.dialect, got)
			case d.want != "" && (got == nil || got.rule != d.want):
				t.Errorf("%q in %q: got %v, want %s", tt.sql, d.dialect, got, d.want)
			}
		}
	}
}

func TestSQLKeyedWhere(t *testing.T) {
	p := compileSQL(&SQLPolicy{Dialect: dialectPostgres, Statements: []string{"update", "delete", "select"}, Keys: []string{"id"}})
	for where, ok := range map[string]bool{
		"id = 1": true, "id = $1": true, "t.id = ?": true, "1 = id": true, "id IN (1, 2, -3)": true, "(id = 'a')": true,
		"id = 1 AND x = y": true, "x > 3 AND id = 7": true, "id = 1 AND (a = 1 OR b = 2)": true,
		"name = 'x'": false, "id = id": false, "id = 1 OR id = 2": false, "1 = 1": false, "id > 1": false, "id IN (SELECT id FROM t)": false,
		"id = 1 = 0": false, "NOT id = 1": false, "id = lower('x')": false, "id IS NULL": false, "TRUE": false, "id = -id": false,
	} {
		for _, stmt := range []string{"DELETE FROM t WHERE " + where, "UPDATE t SET a = 1 WHERE " + where + " RETURNING id"} {
			got := p.check(stmt)
			if ok != (got == nil) {
				t.Errorf("%s: got %v, want allowed=%v", stmt, got, ok)
			}
		}
	}
}

func TestSQLStatementsAndFunctions(t *testing.T) {
	p := compileSQL(&SQLPolicy{Dialect: dialectPostgres, Statements: []string{"select", "explain"}, Functions: []string{"my_report", "stats.summary"}})
	for stmt, rule := range map[string]string{
		"SELECT my_report(1)":                                            "",
		"SELECT stats.summary()":                                         "",
		"SELECT other.summary()":                                         RuleSQLFunction,
		"EXPLAIN SELECT 1":                                               "",
		"EXPLAIN (ANALYZE, FORMAT JSON) SELECT 1":                        "",
		"EXPLAIN ANALYZE DELETE FROM t":                                  RuleSQLStatement,
		"SELECT * FROM t WHERE x IN (SELECT y FROM u)":                   "",
		"SELECT * FROM (DELETE FROM t RETURNING *) d":                    RuleSQLStatement,
		"WITH x (a) AS (SELECT 1) SELECT a FROM x":                       "",
		"WITH x AS MATERIALIZED (UPDATE t SET a=1 RETURNING a) SELECT 1": RuleSQLStatement,
		"SELECT count(*) AS n FROM t":                                    "",
		"SELECT CAST(a AS varchar(10)), a::numeric(5,2) FROM t":          "",
		"SELECT * FROM t FOR SHARE":                                      RuleSQLLock,
		"SELECT 1 INTO x":                                                RuleSQLInto,
		"":                                                               RuleSQLSyntax,
		";":                                                              RuleSQLSyntax,
		"FOO BAR":                                                        RuleSQLStatement,
	} {
		got := p.check(stmt)
		switch {
		case rule == "" && got != nil:
			t.Errorf("%s: refused: %v", stmt, got)
		case rule != "" && (got == nil || got.rule != rule):
			t.Errorf("%s: got %v, want %s", stmt, got, rule)
		}
	}
}
