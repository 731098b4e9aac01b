package firewall

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"
)

// This file holds the shell-like tokeniser and the dangerous-command rules.
//
// The tokeniser follows POSIX sh closely enough that quoting tricks do not
// hide a command: quotes and backslashes are removed the way the shell
// removes them (r''m, "rm", r\m all give rm), runs of blanks and $IFS
// separate words, $'\x72m' is decoded, and command substitutions
// ($(...), `...`, <(...), >(...)) are extracted and checked as commands of
// their own. It does not expand variables, globs or aliases.

// shellMode says how much of a string is treated as a command line.
type shellMode int

const (
	// modeShell: the argument is a command (key "command", a shell tool, the
	// payload of sh -c). Every rule applies; chaining or substitution of any
	// command is refused.
	modeShell shellMode = iota
	// modeInferred: a neutral argument (a path, a name). Dangerous-command
	// rules apply to every simple command in it; chaining and substitution
	// are refused only when they introduce a known command.
	modeInferred
	// modeCode: program source (key "code", python -c). Only the
	// dangerous-command rules apply, to the code and to each string literal
	// in it; chaining is normal syntax there.
	modeCode
)

// maxShellDepth bounds nested re-parsing (sh -c "$(sh -c '...')"), and
// maxReparse the number of command lines analysed per call; past either
// the call is blocked (args.too_complex), never waved through.
const (
	maxShellDepth = 8
	maxReparse    = 1 << 16
)

type word struct {
	text   string
	quoted bool     // some part was quoted
	subs   []string // command substitutions inside the word
}

type redirect struct {
	op     string
	target string
}

type simpleCmd struct {
	argv  []word
	redir []redirect
	// sep is the operator that ended this command: "", ";", "&", "&&",
	// "||", "|", "|&", "\n", "(", ")".
	sep string
}

type parsed struct {
	cmds []simpleCmd
	subs []string // every substitution body, in order
}

// lex splits s into simple commands. It never fails: unterminated quotes
// or substitutions run to the end of the input.
func lex(s string) parsed {
	var p parsed
	var cur simpleCmd
	var w strings.Builder
	inWord, quoted := false, false
	var wsubs []string
	pendingRedir := ""

	endWord := func() {
		if !inWord {
			return
		}
		wd := word{text: w.String(), quoted: quoted, subs: wsubs}
		if pendingRedir != "" {
			cur.redir = append(cur.redir, redirect{op: pendingRedir, target: wd.text})
			pendingRedir = ""
			if len(wd.subs) > 0 { // keep them visible to the rules
				cur.argv = append(cur.argv, word{text: "", subs: wd.subs})
			}
		} else {
			cur.argv = append(cur.argv, wd)
		}
		w.Reset()
		inWord, quoted, wsubs = false, false, nil
	}
	endCmd := func(sep string) {
		endWord()
		if pendingRedir != "" {
			cur.redir = append(cur.redir, redirect{op: pendingRedir})
			pendingRedir = ""
		}
		cur.sep = sep
		if len(cur.argv) > 0 || len(cur.redir) > 0 || sep != "" {
			p.cmds = append(p.cmds, cur)
		}
		cur = simpleCmd{}
	}
	addSub := func(body string) {
		wsubs = append(wsubs, body)
		p.subs = append(p.subs, body)
		inWord = true
		w.WriteString("\x00sub\x00")
	}

	n := len(s)
	for i := 0; i < n; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			endWord()
			i++
		case c == '\\':
			if i+1 < n {
				if s[i+1] == '\n' { // line continuation
					i += 2
					continue
				}
				w.WriteByte(s[i+1])
				inWord = true
				quoted = true
				i += 2
			} else {
				i++
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = n - i - 1
			}
			w.WriteString(s[i+1 : i+1+j])
			inWord, quoted = true, true
			i += j + 2
		case c == '"':
			i++
			inWord, quoted = true, true
			for i < n && s[i] != '"' {
				switch {
				case s[i] == '\\' && i+1 < n && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0:
					if s[i+1] != '\n' {
						w.WriteByte(s[i+1])
					}
					i += 2
				case s[i] == '$' && i+1 < n && s[i+1] == '(':
					body, next := matchParen(s, i+2)
					addSub(body)
					i = next
				case s[i] == '`':
					body, next := matchBacktick(s, i+1)
					addSub(body)
					i = next
				default:
					w.WriteByte(s[i])
					i++
				}
			}
			i++ // closing quote
		case c == '`':
			body, next := matchBacktick(s, i+1)
			addSub(body)
			i = next
		case c == '$':
			switch {
			case i+1 < n && s[i+1] == '(':
				body, next := matchParen(s, i+2)
				addSub(body)
				i = next
			case i+1 < n && s[i+1] == '\'':
				dec, next := ansiC(s, i+2)
				w.WriteString(dec)
				inWord, quoted = true, true
				i = next
			case strings.HasPrefix(s[i:], "${IFS"):
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					j = n - i - 1
				}
				endWord()
				i += j + 1
			case strings.HasPrefix(s[i:], "$IFS"):
				endWord()
				i += 4
			default:
				w.WriteByte(c)
				inWord = true
				i++
			}
		case (c == '<' || c == '>') && i+1 < n && s[i+1] == '(':
			body, next := matchParen(s, i+2)
			addSub(body)
			i = next
		case c == '<' || c == '>':
			// A word made only of digits right before is a file descriptor.
			if inWord && !quoted && isDigits(w.String()) {
				w.Reset()
				inWord = false
			}
			endWord()
			j := i
			for j < n && (s[j] == '<' || s[j] == '>' || s[j] == '&' || s[j] == '|') && j-i < 3 {
				j++
			}
			pendingRedir = s[i:j]
			i = j
			// "2>&1": the target is an fd, not a file
			if strings.HasSuffix(pendingRedir, "&") {
				k := i
				for k < n && (s[k] >= '0' && s[k] <= '9' || s[k] == '-') {
					k++
				}
				if k > i {
					pendingRedir = ""
					i = k
				}
			}
		case c == '&' && i+1 < n && s[i+1] == '>':
			endWord()
			j := i + 2
			if j < n && s[j] == '>' {
				j++
			}
			pendingRedir = s[i:j]
			i = j
		case c == ';' || c == '&' || c == '|':
			sep := string(c)
			if i+1 < n && (s[i+1] == c || (c == '|' && s[i+1] == '&')) {
				sep += string(s[i+1])
			}
			endCmd(sep)
			i += len(sep)
		case c == '\n':
			endCmd("\n")
			i++
		case c == '(' || c == ')':
			endCmd(string(c))
			i++
		case c == '#' && !inWord:
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				i = n
			} else {
				i += j
			}
		default:
			w.WriteByte(c)
			inWord = true
			i++
		}
	}
	endCmd("")
	return p
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// matchParen returns the text up to the ')' matching an already consumed
// '(' at start-1, honouring nesting and quotes, and the index after it.
func matchParen(s string, start int) (string, int) {
	depth := 1
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return s[start:], len(s)
			}
			i += j + 1
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[start:i], i + 1
			}
		}
	}
	return s[start:], len(s)
}

func matchBacktick(s string, start int) (string, int) {
	var b strings.Builder
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				b.WriteByte(s[i+1])
				i++
			}
		case '`':
			return b.String(), i + 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), len(s)
}

// ansiC decodes a $'...' string starting after the opening quote.
func ansiC(s string, i int) (string, int) {
	var b strings.Builder
	for i < len(s) && s[i] != '\'' {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
			i++
		case 't':
			b.WriteByte('\t')
			i++
		case 'x':
			j := i + 1
			for j < len(s) && j < i+3 && isHex(s[j]) {
				j++
			}
			if v, err := strconv.ParseUint(s[i+1:j], 16, 8); err == nil {
				b.WriteByte(byte(v))
			}
			i = j
		case 'u', 'U':
			max := 4
			if c == 'U' {
				max = 8
			}
			j := i + 1
			for j < len(s) && j < i+1+max && isHex(s[j]) {
				j++
			}
			if v, err := strconv.ParseUint(s[i+1:j], 16, 32); err == nil {
				b.WriteRune(rune(v))
			}
			i = j
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			if v, err := strconv.ParseUint(s[i:j], 8, 8); err == nil {
				b.WriteByte(byte(v))
			}
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), i + 1
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// cmdName is the command a word names: basename, lower case, without a
// Windows extension or a leading backslash.
func cmdName(w string) string {
	w = strings.TrimLeft(w, "\\")
	if i := strings.LastIndexAny(w, "/\\"); i >= 0 {
		w = w[i+1:]
	}
	w = strings.ToLower(w)
	for _, ext := range []string{".exe", ".com", ".bat", ".cmd"} {
		w = strings.TrimSuffix(w, ext)
	}
	return w
}

// isAssign reports whether w is a shell assignment word (NAME=value,
// NAME+=value).
func isAssign(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		case c == '=' && i > 0:
			return true
		case c == '+' && i > 0 && i+1 < len(w) && w[i+1] == '=':
			return true
		default:
			return false
		}
	}
	return false
}

// Command sets. Keys are cmdName results.
var (
	wrapperCmds = set("env", "xargs", "nohup", "nice", "time", "timeout", "stdbuf", "command",
		"builtin", "exec", "setsid", "strace", "ltrace", "busybox", "watch", "ionice", "chroot",
		"unbuffer", "flock", "taskset", "chrt", "cpulimit", "caffeinate", "script", "faketime",
		"firejail", "torsocks", "proxychains", "proxychains4", "nsenter", "unshare", "systemd-run",
		"parallel", "then", "do", "else", "!", "{", "if", "while", "until", "exec")
	privCmds   = set("sudo", "su", "doas", "pkexec", "runas", "sudoedit", "gosu", "su-exec")
	shellCmds  = set("sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "ash", "csh", "tcsh", "rbash", "cmd", "pwsh", "powershell", "busybox")
	downloader = set("curl", "wget", "fetch", "aria2c", "lwp-request", "lwp-download", "http", "https", "httpie", "xh",
		"invoke-webrequest", "iwr", "invoke-restmethod", "irm", "nc", "ncat", "netcat", "socat", "tftp", "ftp", "scp", "rsync",
		"base64", "xxd", "openssl", "certutil", "bitsadmin")
	devicePrefixes = []string{"/dev/sd", "/dev/hd", "/dev/nvme", "/dev/vd", "/dev/xvd", "/dev/mmcblk",
		"/dev/disk", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/dm-", "/dev/md", "/dev/loop", "/dev/mapper/", "/dev/root", "/dev/rdisk"}
	knownCmds = set(
		// file and system utilities an attacker chains or a benign command
		// line starts with; used to decide whether "a; b" chains a command
		"ls", "cat", "echo", "printf", "cd", "pwd", "cp", "mv", "rm", "rmdir", "mkdir", "touch", "chmod", "chown",
		"chgrp", "ln", "find", "grep", "egrep", "fgrep", "sed", "awk", "gawk", "head", "tail", "sort", "uniq", "wc",
		"cut", "tr", "tee", "less", "more", "vi", "vim", "nano", "emacs", "ps", "kill", "killall", "pkill", "top",
		"whoami", "id", "uname", "hostname", "ifconfig", "ip", "netstat", "ss", "ping", "traceroute", "dig", "nslookup",
		"ssh", "scp", "rsync", "git", "tar", "zip", "unzip", "gzip", "gunzip", "mount", "umount", "df", "du", "free",
		"dd", "mkfs", "fdisk", "parted", "shred", "wipefs", "crontab", "systemctl", "service", "shutdown", "reboot",
		"halt", "poweroff", "init", "useradd", "userdel", "usermod", "passwd", "iptables", "ufw", "apt", "apt-get", "yum",
		"dnf", "apk", "pip", "pip3", "npm", "npx", "yarn", "docker", "kubectl", "make", "gcc", "go", "cargo", "java",
		"history", "export", "unset", "alias", "source", ".", "eval", "exec", "set", "trap", "nohup", "sleep",
		"python", "python2", "python3", "perl", "ruby", "node", "php", "lua", "osascript", "del", "rd", "format",
		"reg", "net", "sc", "taskkill", "remove-item", "ri", "stop-computer", "restart-computer", "mkswap", "mke2fs",
		"truncate", "base64", "xxd", "openssl", "telnet", "nmap", "chattr", "insmod", "rmmod", "modprobe", "sysctl",
		"at", "launchctl", "defaults", "open", "start", "xdg-open", "cmd", "curl", "wget", "nc", "ncat", "socat",
	)
)

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// known reports whether a command name is one the rules know about.
func known(name string) bool {
	return knownCmds[name] || wrapperCmds[name] || privCmds[name] || shellCmds[name] ||
		downloader[name] || isInterpreter(name) || strings.HasPrefix(name, "mkfs")
}

// isInterpreter: a program that runs code read from stdin or an argument.
func isInterpreter(name string) bool {
	if shellCmds[name] {
		return true
	}
	switch name {
	case "perl", "ruby", "node", "nodejs", "deno", "bun", "php", "lua", "luajit", "tclsh", "r", "rscript",
		"osascript", "iex", "invoke-expression", "source", ".", "eval", "jshell":
		return true
	}
	return strings.HasPrefix(name, "python") || strings.HasPrefix(name, "pypy") || strings.HasPrefix(name, "perl") ||
		strings.HasPrefix(name, "ruby") || strings.HasPrefix(name, "php")
}

// finding is a rule hit.
type finding struct {
	rule   string
	reason string
}

// checker walks parsed command lines.
type checker struct {
	budget     int  // remaining re-parses, bounds total work
	allowChain bool // Config.AllowChaining
}

// checkLine checks one command line in a mode.
func (ck *checker) checkLine(s string, mode shellMode, depth int) *finding {
	if depth > maxShellDepth || ck.budget <= 0 {
		// fail closed: nesting this deep is an evasion attempt
		return &finding{"args.too_complex", "command nesting exceeds the analysis limit"}
	}
	ck.budget--
	if f := forkBomb(s); f != nil {
		return f
	}
	if mode == modeCode {
		// notebook shell escapes: "!rm -rf x" runs a shell command
		s = strings.ReplaceAll(s, "\n!", "\n")
		s = strings.TrimPrefix(strings.TrimLeft(s, " \t"), "!")
	}
	p := lex(s)
	// 1. every simple command
	for i := range p.cmds {
		c := &p.cmds[i]
		if mode == modeCode && !shellLooking(c) {
			continue
		}
		argv := argvText(c.argv)
		if f := devSocket(argv); f != nil {
			return f
		}
		if f := ck.checkCmd(argv, c.argv, mode, depth); f != nil {
			return f
		}
		if f := checkRedirects(c.redir); f != nil {
			return f
		}
	}
	if mode == modeCode {
		for _, lit := range stringLiterals(s) {
			if strings.ContainsAny(lit, " \t\n;|&") {
				if f := ck.checkLine(lit, modeInferred, depth+1); f != nil {
					return f
				}
			}
		}
	}
	// 2. substitution bodies
	subMode := modeInferred
	if mode == modeShell {
		subMode = modeShell
	}
	for _, body := range p.subs {
		if f := ck.checkLine(body, subMode, depth+1); f != nil {
			return f
		}
	}
	// 3. downloader piped into an interpreter
	if f := pipeToShell(p.cmds); f != nil {
		return f
	}
	if mode == modeCode {
		return nil
	}
	// 4. chaining: a command after ; && || & or a newline
	for i := 0; i+1 < len(p.cmds) && !ck.allowChain; i++ {
		switch p.cmds[i].sep {
		case ";", "&&", "||", "&", "\n":
		default:
			continue
		}
		if len(p.cmds[i].argv) == 0 && len(p.cmds[i].redir) == 0 {
			continue
		}
		next := p.cmds[i+1]
		if len(next.argv) == 0 {
			continue
		}
		name := cmdName(effective(argvText(next.argv)))
		if mode == modeShell || known(name) || strings.ContainsAny(next.argv[0].text, "/") {
			return &finding{"shell.chain", "chains a second command (" + name + ") with " + sepName(p.cmds[i].sep)}
		}
	}
	// 5. command substitution
	for _, body := range p.subs {
		sp := lex(body)
		if len(sp.cmds) == 0 || len(sp.cmds[0].argv) == 0 {
			continue
		}
		name := cmdName(effective(argvText(sp.cmds[0].argv)))
		if mode == modeShell || known(name) {
			return &finding{"shell.substitution", "runs a command substitution (" + name + ")"}
		}
	}
	return nil
}

func sepName(sep string) string {
	if sep == "\n" {
		return "a newline"
	}
	return "'" + sep + "'"
}

func argvText(ws []word) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.text
	}
	return out
}

// stripPrefix drops leading assignments, "{", "!" and similar words.
func stripPrefix(argv []string) []string {
	for len(argv) > 0 {
		a := argv[0]
		if a == "" || a == "{" || a == "}" || a == "!" || isAssign(a) {
			argv = argv[1:]
			continue
		}
		break
	}
	return argv
}

// effective returns the program a command line really runs, looking
// through wrappers such as env, nohup, timeout and sudo.
func effective(argv []string) string {
	argv = stripPrefix(argv)
	for hops := 0; len(argv) > 0 && hops < 8; hops++ {
		name := cmdName(argv[0])
		if !wrapperCmds[name] && !privCmds[name] {
			return argv[0]
		}
		j := nextKnown(argv)
		if j < 0 {
			return argv[0]
		}
		argv = argv[j:]
	}
	if len(argv) == 0 {
		return ""
	}
	return argv[0]
}

// nextKnown is the index of the first word after argv[0] that names a
// known command, or -1.
func nextKnown(argv []string) int {
	for j := 1; j < len(argv); j++ {
		if strings.HasPrefix(argv[j], "-") || isAssign(argv[j]) {
			continue
		}
		if known(cmdName(argv[j])) {
			return j
		}
	}
	return -1
}

// checkCmd applies the dangerous-command rules to one simple command.
func (ck *checker) checkCmd(argv []string, words []word, mode shellMode, depth int) *finding {
	if depth > maxShellDepth {
		return &finding{"args.too_complex", "command nesting exceeds the analysis limit"}
	}
	off := len(argv)
	argv = stripPrefix(argv)
	off -= len(argv)
	if len(argv) == 0 {
		return nil
	}
	name := cmdName(argv[0])
	args := argv[1:]
	switch {
	case privCmds[name]:
		return &finding{"shell.sudo", "runs a command with elevated privileges (" + name + ")"}
	case wrapperCmds[name]:
		if name == "xargs" || name == "parallel" || name == "watch" || name == "su" {
			// the rest may be one quoted command line
			for _, a := range args {
				if strings.ContainsAny(a, " \t") {
					if f := ck.checkLine(a, mode, depth+1); f != nil {
						return f
					}
				}
			}
		}
		if j := nextKnown(argv); j > 0 {
			var ws []word
			if off+j <= len(words) {
				ws = words[off+j:]
			}
			return ck.checkCmd(argv[j:], ws, mode, depth+1)
		}
		return nil
	case name == "rm" || name == "remove-item" || name == "ri" || name == "rmdir" || name == "rd" || name == "del" || name == "erase":
		if f := rmFlags(name, args); f != nil {
			return f
		}
	case name == "find":
		for i, a := range args {
			switch strings.ToLower(a) {
			case "-delete":
				return &finding{"shell.rm_recursive", "find -delete removes every match"}
			case "-exec", "-execdir", "-ok", "-okdir":
				end := i + 1
				for end < len(args) && args[end] != ";" && args[end] != "+" {
					end++
				}
				if i+1 < end {
					if f := ck.checkCmd(args[i+1:end], nil, mode, depth+1); f != nil {
						return f
					}
				}
			}
		}
	case name == "chmod":
		for _, a := range args {
			la := strings.ToLower(a)
			if la == "777" || la == "0777" || la == "1777" || la == "a+rwx" || la == "ugo+rwx" || la == "+rwx" ||
				la == "o+w" || la == "a+w" || la == "u+s" || la == "g+s" || la == "+s" || la == "4755" || la == "4777" || la == "2755" {
				return &finding{"shell.chmod", "chmod " + a + " opens permissions"}
			}
		}
	case strings.HasPrefix(name, "mkfs") || name == "mke2fs" || name == "mkswap" || name == "fdisk" || name == "sfdisk" ||
		name == "parted" || name == "wipefs" || name == "format" || name == "diskpart":
		return &finding{"shell.mkfs", name + " formats or repartitions a disk"}
	case name == "shred":
		return &finding{"shell.mkfs", "shred destroys data"}
	case name == "dd":
		for _, a := range args {
			if strings.HasPrefix(a, "of=") && isDevice(a[3:]) {
				return &finding{"shell.dd_device", "dd writes to a device (" + a + ")"}
			}
		}
	case name == "shutdown" || name == "reboot" || name == "halt" || name == "poweroff" || name == "stop-computer" || name == "restart-computer" ||
		(name == "init" && len(args) > 0 && (args[0] == "0" || args[0] == "6")):
		return &finding{"shell.shutdown", name + " stops the machine"}
	case name == "nc" || name == "ncat" || name == "netcat" || name == "socat":
		for _, a := range args {
			if a == "-e" || a == "-c" || strings.HasPrefix(a, "exec:") || strings.HasPrefix(a, "EXEC:") || strings.HasPrefix(a, "SYSTEM:") {
				return &finding{"shell.reverse_shell", name + " " + a + " spawns a remote shell"}
			}
		}
	case name == "ssh":
		// ssh host command...: the command runs remotely
		rest := sshCommand(args)
		if rest != "" {
			return ck.checkLine(rest, modeShell, depth+1)
		}
	case name == "eval" || name == "iex" || name == "invoke-expression":
		if len(args) > 0 {
			return ck.checkLine(strings.Join(args, " "), modeShell, depth+1)
		}
	}
	if isInterpreter(name) {
		// interpreter fed by a downloader: bash <(curl ...), sh -c "$(curl ...)"
		for _, w := range words {
			for _, body := range w.subs {
				if hasDownloader(body) {
					return &finding{"shell.pipe_to_shell", name + " runs downloaded code"}
				}
			}
		}
		if f := ck.interpreterPayload(name, args, depth); f != nil {
			return f
		}
	}
	return nil
}

// interpreterPayload checks the code passed with -c / -e / -Command.
func (ck *checker) interpreterPayload(name string, args []string, depth int) *finding {
	for i, a := range args {
		la := strings.ToLower(a)
		if shellCmds[name] && (la == "-enc" || la == "-encodedcommand" || la == "-e" && (name == "pwsh" || name == "powershell") || la == "-ec") {
			if i+1 < len(args) {
				if dec, ok := decodeUTF16Base64(args[i+1]); ok {
					if f := ck.checkLine(dec, modeShell, depth+1); f != nil {
						return f
					}
				}
			}
			return &finding{"shell.encoded_command", name + " runs an encoded command"}
		}
		isFlag := la == "-c" || la == "/c" || la == "/k" || la == "-command" || la == "-e" || la == "-r" || la == "--eval" || la == "-exec" ||
			(len(la) > 2 && la[0] == '-' && la[1] != '-' && strings.HasSuffix(la, "c") && shellCmds[name]) // bash -ic, sh -xc
		if !isFlag || i+1 >= len(args) {
			continue
		}
		payload := strings.Join(args[i+1:], " ")
		if shellCmds[name] || name == "eval" || name == "source" || name == "." {
			if name == "cmd" {
				payload = strings.ReplaceAll(payload, "^", "")
			}
			return ck.checkLine(payload, modeShell, depth+1)
		}
		return ck.checkLine(payload, modeCode, depth+1)
	}
	return nil
}

func decodeUTF16Base64(s string) (string, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%2 != 0 {
		return "", false
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
	}
	return string(utf16.Decode(u)), true
}

func sshCommand(args []string) string {
	const withValue = "bcDEeFIiJLlmOopQRSWw"
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) >= 2 {
			if len(a) == 2 && strings.IndexByte(withValue, a[1]) >= 0 {
				i++
			}
			continue
		}
		return strings.Join(args[i+1:], " ")
	}
	return ""
}

func rmFlags(name string, args []string) *finding {
	for _, a := range args {
		if a == "--" {
			break
		}
		la := strings.ToLower(a)
		switch {
		case name == "rm" && strings.HasPrefix(a, "--"):
			if strings.HasPrefix(la, "--recursive") || strings.HasPrefix(la, "--force") || la == "--no-preserve-root" || la == "--dir" {
				return &finding{"shell.rm_recursive", "rm " + a + " deletes recursively or forcibly"}
			}
		case name == "rm" && strings.HasPrefix(a, "-") && len(a) > 1:
			if strings.ContainsAny(a[1:], "rRf") {
				return &finding{"shell.rm_recursive", "rm " + a + " deletes recursively or forcibly"}
			}
		case name == "remove-item" || name == "ri":
			if strings.HasPrefix(la, "-r") || strings.HasPrefix(la, "-fo") {
				return &finding{"shell.rm_recursive", name + " " + a + " deletes recursively or forcibly"}
			}
		case name == "rmdir" || name == "rd" || name == "del" || name == "erase":
			if la == "/s" || la == "/q" || la == "-r" || la == "--recursive" || la == "-rf" || la == "/f" {
				return &finding{"shell.rm_recursive", name + " " + a + " deletes recursively or forcibly"}
			}
		}
	}
	return nil
}

func isDevice(path string) bool {
	for _, p := range devicePrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func checkRedirects(rs []redirect) *finding {
	for _, r := range rs {
		if strings.Contains(r.target, "/dev/tcp/") || strings.Contains(r.target, "/dev/udp/") {
			return &finding{"shell.reverse_shell", "redirects to a network socket (" + r.target + ")"}
		}
		if strings.Contains(r.op, ">") && isDevice(r.target) {
			return &finding{"shell.device_write", "writes to a device (" + r.target + ")"}
		}
	}
	return nil
}

// hasDownloader reports whether a command line runs a downloader.
func hasDownloader(s string) bool {
	for _, c := range lex(s).cmds {
		if len(c.argv) > 0 && downloader[cmdName(effective(argvText(c.argv)))] {
			return true
		}
	}
	return false
}

// pipeToShell finds "downloader ... | interpreter" in the pipelines of a
// command line.
func pipeToShell(cmds []simpleCmd) *finding {
	src, piped := "", false
	for _, c := range cmds {
		name := ""
		if len(c.argv) > 0 {
			name = cmdName(effective(argvText(c.argv)))
		}
		if piped && isInterpreter(name) && readsStdin(c.argv) {
			if src != "" {
				return &finding{"shell.pipe_to_shell", src + " output is piped into " + name}
			}
			return &finding{"shell.pipe_to_shell", "text is piped into " + name + " and run"}
		}
		piped = c.sep == "|" || c.sep == "|&"
		if downloader[name] {
			src = name
		}
		if c.sep != "|" && c.sep != "|&" {
			src = ""
		}
	}
	return nil
}

// forkBomb detects the classic shell function fork bomb in any spelling
// (":(){ :|:& };:", "bomb(){ bomb|bomb& }; bomb") and Perl's fork loop.
var (
	fnDefRe  = regexp.MustCompile(`([^\s;&|(){}]+)\(\)\{`)
	fnDef2Re = regexp.MustCompile(`function([^\s;&|(){}]+)(?:\(\))?\{`)
)

func forkBomb(s string) *finding {
	if !strings.Contains(s, "{") && !strings.Contains(s, "fork") {
		return nil
	}
	compact := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
	if strings.Contains(compact, "forkwhilefork") || strings.Contains(compact, "while(1)fork") || strings.Contains(compact, "whiletrue:os.fork()") {
		return &finding{"shell.fork_bomb", "spawns processes without bound"}
	}
	for _, re := range []*regexp.Regexp{fnDefRe, fnDef2Re} {
		for _, m := range re.FindAllStringSubmatchIndex(compact, 8) {
			name := compact[m[2]:m[3]]
			body := compact[m[1]:]
			if strings.Contains(body, name+"|"+name) {
				return &finding{"shell.fork_bomb", "function " + name + " pipes into itself (fork bomb)"}
			}
		}
	}
	return nil
}

// stringLiterals returns the contents of the quoted string literals of
// program source ('...', "...", `...`, with backslash escapes), the
// arguments code usually hands to os.system, subprocess or exec.
func stringLiterals(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		q := s[i]
		if q != '\'' && q != '"' && q != '`' {
			continue
		}
		var b strings.Builder
		j := i + 1
		for ; j < len(s) && s[j] != q; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(s[j])
				}
				continue
			}
			b.WriteByte(s[j])
		}
		out = append(out, b.String())
		i = j
	}
	return out
}

// readsStdin reports whether an interpreter command runs code from its
// standard input: no script or -c argument ("sh", "bash -s", "python3 -").
func readsStdin(argv []word) bool {
	args := stripPrefix(argvText(argv))
	for len(args) > 0 && (wrapperCmds[cmdName(args[0])] || privCmds[cmdName(args[0])]) {
		j := nextKnown(args)
		if j < 0 {
			return false
		}
		args = args[j:]
	}
	if len(args) == 0 {
		return false
	}
	for _, a := range args[1:] {
		if a == "-" || a == "-s" {
			return true
		}
		if !strings.HasPrefix(a, "-") || a == "-c" || a == "-e" || a == "-m" {
			return false
		}
	}
	return true
}

// shellLooking reports whether a simple command parsed out of program
// source looks like a shell command line ("rm -rf /", "!pip install x")
// rather than code ("su = 1", "shutdown()", "find(x)").
func shellLooking(c *simpleCmd) bool {
	if len(c.argv) < 2 || c.sep == "(" {
		return false
	}
	a0, a1 := c.argv[0].text, c.argv[1].text
	if strings.ContainsAny(a0, "()[]{}=,:") && !strings.HasPrefix(a0, "!") {
		return false
	}
	for _, p := range []string{"=", "+=", "-=", "*=", "/=", ":", ".", "[", "(", ",", "==", "!="} {
		if strings.HasPrefix(a1, p) {
			return false
		}
	}
	switch a1 {
	case "in", "is", "and", "or", "not", "if", "for", "as", "from", "import":
		return false
	}
	return true
}

// devSocket finds bash's /dev/tcp and /dev/udp pseudo-files in any word.
func devSocket(argv []string) *finding {
	for _, a := range argv {
		if strings.Contains(a, "/dev/tcp/") || strings.Contains(a, "/dev/udp/") {
			return &finding{"shell.reverse_shell", "opens a network socket through /dev/tcp"}
		}
	}
	return nil
}
