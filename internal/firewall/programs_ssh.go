package firewall

import (
	"fmt"
	"strings"
)

// ssh and scp: options are parsed with ssh's own option table. An -o
// option is allowed only if it is one of sshSafeOptions (ProxyCommand,
// LocalCommand, KnownHostsCommand, PKCS11Provider, Include, Match and
// every option not listed run commands, load code or read more options).
// -F (a config file holds any option) and scp/ssh -S/-D (programs) are
// refused unless listed in the program's flags. The remote command of
// "ssh host command" is parsed and checked by the same policy: a command
// the terminal may not run locally it may not run remotely either.

const (
	sshNoValue = "46AaCfGgKkMNnqsTtVvXxYy"
	sshValue   = "BbcDEeFIiJLlmOoPpQRSWw"
	scpNoValue = "346ABCOpqRrTv"
	scpValue   = "cDFiJloPSX"
)

// sshSafeOptions are the -o options allowed (lower case), and whether the
// value is a path.
var sshSafeOptions = map[string]bool{
	"batchmode": false, "connecttimeout": false, "connectionattempts": false, "stricthostkeychecking": false,
	"userknownhostsfile": true, "globalknownhostsfile": true, "port": false, "user": false, "identityfile": true,
	"identitiesonly": false, "serveraliveinterval": false, "serveralivecountmax": false, "tcpkeepalive": false,
	"compression": false, "loglevel": false, "hostkeyalgorithms": false, "pubkeyacceptedalgorithms": false,
	"pubkeyacceptedkeytypes": false, "preferredauthentications": false, "passwordauthentication": false,
	"pubkeyauthentication": false, "kbdinteractiveauthentication": false, "addressfamily": false, "requesttty": false,
	"hashknownhosts": false, "checkhostip": false, "updatehostkeys": false, "visualhostkey": false,
	"numberofpasswordprompts": false, "ciphers": false, "macs": false, "kexalgorithms": false, "hostname": false,
	"controlmaster": false, "controlpath": true, "controlpersist": false, "escapechar": false,
	"setenv": false, "sendenv": false, "ipqos": false, "rekeylimit": false, "fingerprinthash": false,
}

func init() {
	register(&model{invoke: func(c *shellCheck, pp *programPolicy, args []word) *finding {
		return invokeSSH(c, pp, args, false)
	}}, "ssh")
	register(&model{invoke: func(c *shellCheck, pp *programPolicy, args []word) *finding {
		return invokeSSH(c, pp, args, true)
	}}, "scp")
}

func invokeSSH(c *shellCheck, pp *programPolicy, args []word, scp bool) *finding {
	riskyOpts := []risky{{"-F", "reads options, and so any option, from a config file"}}
	if scp {
		riskyOpts = append(riskyOpts, risky{"-S", "runs the given program as ssh"}, risky{"-D", "runs the given sftp server program"})
	} else {
		riskyOpts = append(riskyOpts, risky{"-I", "loads a PKCS#11 library"})
	}
	opts, paths, i, f := sshOptions(c, pp.name, args, scp)
	if f != nil {
		return f
	}
	if why := flagProblem(pp, &model{riskyFlags: riskyOpts}, opts); why != "" {
		return &finding{RuleShellFlag, why}
	}
	for _, w := range paths {
		if why := c.pathProblem(w); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s option value %s: %s", pp.name, w.text, why)}
		}
	}
	if scp {
		for _, w := range args[i:] {
			colon, slash := strings.IndexByte(w.text, ':'), strings.IndexByte(w.text, '/')
			if colon > 0 && (slash < 0 || colon < slash) {
				continue // a remote path
			}
			if why := c.pathProblem(w); why != "" {
				return &finding{RuleShellPath, fmt.Sprintf("scp argument %s: %s", w.text, why)}
			}
		}
		return nil
	}
	if i+1 >= len(args) {
		return nil
	}
	parts := make([]string, 0, len(args)-i-1)
	for _, w := range args[i+1:] {
		parts = append(parts, w.text)
	}
	// ssh joins the words with spaces and the remote shell parses them
	return c.nested(strings.Join(parts, " "))
}

// sshOptions parses ssh's or scp's options with their option table: it
// returns them, the option values that are paths, and the index of the
// first operand; -o options are checked on the way.
func sshOptions(c *shellCheck, prog string, args []word, scp bool) ([]opt, []word, int, *finding) {
	noValue, withValue := sshNoValue, sshValue
	if scp {
		noValue, withValue = scpNoValue, scpValue
	}
	var opts []opt
	var paths []word
	i := 0
	for ; i < len(args); i++ {
		a := args[i].text
		if a == "--" {
			return opts, paths, i + 1, nil
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		o := opt{idx: i, name: a, letters: a[1:], valueIdx: -1}
		for j := 1; j < len(a); j++ {
			ch := a[j]
			if strings.IndexByte(noValue, ch) >= 0 {
				continue
			}
			if strings.IndexByte(withValue, ch) < 0 {
				return nil, nil, 0, &finding{RuleShellFlag, fmt.Sprintf("%s -%c is not an option the firewall knows", prog, ch)}
			}
			o.letters = a[1 : j+1]
			val := a[j+1:]
			if val == "" {
				if i+1 >= len(args) {
					return nil, nil, 0, &finding{RuleShellSyntax, fmt.Sprintf("%s -%c needs a value", prog, ch)}
				}
				i++
				val = args[i].text
			}
			switch ch {
			case 'o':
				if f := sshOption(c, prog, val); f != nil {
					return nil, nil, 0, f
				}
			case 'E', 'i', 'S', 'F', 'D':
				paths = append(paths, literalWord(val))
			}
			break
		}
		opts = append(opts, o)
	}
	return opts, paths, i, nil
}

// sshOption checks one -o option: "Name=value", "Name value" or
// "Name=value" with spaces, names compared case-insensitively.
func sshOption(c *shellCheck, prog, val string) *finding {
	v := strings.TrimLeft(val, " \t")
	end := strings.IndexAny(v, "= \t")
	name, value := v, ""
	if end >= 0 {
		name, value = v[:end], strings.TrimLeft(v[end:], " \t=")
	}
	isPath, ok := sshSafeOptions[strings.ToLower(name)]
	if !ok {
		return &finding{RuleShellOption, fmt.Sprintf("%s -o %s is not an option the firewall allows (ProxyCommand, LocalCommand, KnownHostsCommand, PKCS11Provider and Include run commands, load code or read options)", prog, name)}
	}
	if isPath {
		if why := c.pathProblem(literalWord(value)); why != "" {
			return &finding{RuleShellPath, fmt.Sprintf("%s -o %s: %s", prog, val, why)}
		}
	}
	return nil
}
