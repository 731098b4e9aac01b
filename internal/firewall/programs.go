package firewall

import "strings"

// A model is what the firewall knows about how a program parses its
// arguments and what they make it do: which options take a value, which
// values and operands are text rather than paths, which options and
// subcommands run other commands, load code or write where they are told
// (refused unless the operator lists them), and which arguments hold
// another command or a program (checked by the same policy, or refused
// when the firewall cannot see it). Programs without a model are parsed
// with GNU conventions and every operand is checked as a path.
//
// Models describe programs; they do not allow anything. Only the policy's
// Programs allow a program.
type model struct {
	sdl          bool              // single-dash long options (find, go): no bundles, no abbreviations
	posix        bool              // options end at the first operand
	noAbbrev     bool              // long options are not abbreviated (Go's flag and pflag)
	aliases      map[string]string // short option -> the long option it is ("-f": "--force")
	values       []string          // options that take a value (in the next word when not attached)
	text         []string          // options whose value is text, not a path
	riskyFlags   []risky           // refused unless the program's Flags list them
	textOps      int               // leading operands that are text; -1: all
	textUnless   []string          // options after which no operand is text (grep -e)
	subcommand   bool              // the first operand is a subcommand
	mustSub      bool              // a subcommand is required
	allSubs      bool              // every operand is a subcommand (make targets)
	knownSubs    []string          // the subcommands the program has; others are refused
	riskySubs    map[string]string
	subModels    map[string]*model
	subDefault   *model // model of subcommands not in subModels (default: this model)
	check        func(c *shellCheck, inv *invocation) *finding
	invoke       func(c *shellCheck, pp *programPolicy, args []word) *finding
	knownSubsSet map[string]bool
}

type risky struct{ spec, why string }

func (m *model) singleDashLong() bool { return m != nil && m.sdl }
func (m *model) posixOrder() bool     { return m != nil && m.posix }

// aliasesOf returns the other spellings of a flag: the long form of a
// short one, the short forms of a long one.
func (m *model) aliasesOf(spec string) []string {
	if m == nil || len(m.aliases) == 0 {
		return nil
	}
	if l, ok := m.aliases[spec]; ok {
		return []string{l}
	}
	var out []string
	for s, l := range m.aliases {
		if l == spec {
			out = append(out, s)
		}
	}
	return out
}

// aliasMap builds an alias map from "-f --force -r --recursive ...".
func aliasMap(pairs string) map[string]string {
	f := strings.Fields(pairs)
	m := make(map[string]string, len(f)/2)
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i]] = f[i+1]
	}
	return m
}

// knowsLong reports whether name is a long option the model lists (an
// exact option is never read as an abbreviation of another).
func (m *model) knowsLong(name string) bool {
	if m == nil {
		return false
	}
	for _, l := range [][]string{m.values, m.text} {
		if contains(l, name) {
			return true
		}
	}
	for _, r := range m.riskyFlags {
		if r.spec == name {
			return true
		}
	}
	return false
}
func (m *model) hasSubcommands() bool { return m != nil && m.subcommand }
func (m *model) requiresSub() bool    { return m != nil && m.mustSub }
func (m *model) subsAll() bool        { return m != nil && m.allSubs }
func (m *model) textOperands() int {
	if m == nil {
		return 0
	}
	return m.textOps
}
func (m *model) textUnlessFlags() []string {
	if m == nil {
		return nil
	}
	return m.textUnless
}
func (m *model) risky() []risky {
	if m == nil {
		return nil
	}
	return m.riskyFlags
}
func (m *model) riskySub(sub string) string {
	if m == nil {
		return ""
	}
	return m.riskySubs[sub]
}
func (m *model) knowsSub(sub string) bool {
	return m == nil || m.knownSubsSet == nil || m.knownSubsSet[sub]
}
func (m *model) subModel(sub string) *model {
	if m == nil {
		return nil
	}
	if sm, ok := m.subModels[sub]; ok {
		return sm
	}
	if m.subDefault != nil {
		return m.subDefault
	}
	return m
}

// takesValue reports whether the option name takes a value; a long name
// also matches an abbreviation of one option that does.
func (m *model) takesValue(name string, long bool) bool {
	if m == nil {
		return false
	}
	for _, v := range m.values {
		if v == name {
			return true
		}
	}
	if long && !m.sdl && strings.HasPrefix(name, "--") && len(name) > 2 {
		n := 0
		for _, v := range m.values {
			if strings.HasPrefix(v, name) {
				n++
			}
		}
		return n == 1
	}
	return false
}

// isText reports whether an option's value is text rather than a path.
func (m *model) isText(o opt) bool {
	if m == nil {
		return false
	}
	for _, t := range m.text {
		if o.matches(t, m) {
			return true
		}
	}
	return false
}

func flags(s string) []string { return strings.Fields(s) }

func riskyAll(why string, specs string) []risky {
	var out []risky
	for _, s := range strings.Fields(specs) {
		out = append(out, risky{s, why})
	}
	return out
}

// models by program name; filled in init from the program files.
var models = map[string]*model{}

func register(m *model, names ...string) {
	if m.knownSubs != nil {
		m.knownSubsSet = set(m.knownSubs...)
	}
	for _, n := range names {
		models[n] = m
	}
}

// unlisted are programs a policy cannot allow: they run other programs or
// code in ways the firewall does not model (with other privileges, in
// another namespace, at another time, or from a string or file), so the
// firewall could not check what finally runs. Allow the programs they
// would run instead.
var unlisted = map[string]string{}

func init() {
	for why, names := range map[string]string{
		"it runs a command with other privileges":                             "sudo doas su pkexec runuser sg newgrp setpriv capsh sudoedit",
		"it runs a command in another root or namespace":                      "chroot nsenter unshare systemd-run firejail bwrap proot fakeroot",
		"it runs commands in ways the firewall does not model":                "busybox toybox strace ltrace gdb lldb valgrind script expect parallel chrt taskset flock caffeinate faketime torsocks proxychains proxychains4 cpulimit unbuffer dbus-launch xvfb-run npx pnpx bunx uvx pipx",
		"it schedules commands that run later":                                "at batch crontab",
		"it runs shell code from a string or a file":                          "source . eval exec command builtin trap enable hash alias unalias shopt fc bind complete compgen",
		"it runs commands from its input or from interactive escapes":         "ed ex sqlite3 psql mysql mariadb mongo mongosh ftp sftp tcpdump nmap",
		"its command line is parsed by rules the firewall does not implement": "pwsh powershell cmd",
	} {
		for _, n := range strings.Fields(names) {
			unlisted[n] = why
		}
	}
}
