package firewall

import (
	"fmt"
	"strings"
)

// Models of file and text utilities: which options take values, which
// values and operands are text (patterns, formats, messages) rather than
// paths, and the few options that run commands or write where they are
// told.

func init() {
	register(&model{
		values:     flags("-e --regexp -f --file -m --max-count -A --after-context -B --before-context -C --context -d --directories -D --devices --include --exclude --exclude-dir --exclude-from --label --color --colour --binary-files --group-separator"),
		text:       flags("-e --regexp -m --max-count -A --after-context -B --before-context -C --context -d --directories -D --devices --include --exclude --exclude-dir --label --color --colour --binary-files --group-separator"),
		aliases:    aliasMap("-e --regexp -f --file -r --recursive -R --dereference-recursive -m --max-count -A --after-context -B --before-context -C --context"),
		textOps:    1,
		textUnless: flags("-e --regexp -f --file"),
	}, "grep", "egrep", "fgrep")
	register(&model{
		values:     flags("-e --regexp -f --file -g --glob -t --type -T --type-not -m --max-count -A -B -C --context -j --threads -M --max-columns --max-depth --pre --pre-glob -E --encoding --color --colors --sort --sortr --path-separator -r --replace --iglob"),
		text:       flags("-e --regexp -g --glob -t --type -T --type-not -m --max-count -A -B -C --context -j --threads -M --max-columns --max-depth --pre-glob -E --encoding --color --colors --sort --sortr --path-separator -r --replace --iglob"),
		riskyFlags: append(riskyAll("runs a preprocessor command on every file", "--pre"), riskyAll("runs decompression programs", "-z --search-zip")...),
		textOps:    1,
		textUnless: flags("-e --regexp -f --file"),
	}, "rg")
	register(&model{
		values:     flags("-k --key -t --field-separator -o --output -T --temporary-directory -S --buffer-size --parallel --batch-size --files0-from --compress-program --random-source"),
		text:       flags("-k --key -t --field-separator -S --buffer-size --parallel --batch-size"),
		riskyFlags: riskyAll("runs a compression program (GTFOBins: sort --compress-program=sh)", "--compress-program"),
		aliases:    aliasMap("-o --output -k --key -t --field-separator -T --temporary-directory -S --buffer-size"),
	}, "sort")
	register(&model{values: flags("-n --lines -c --bytes"), text: flags("-n --lines -c --bytes")}, "head")
	register(&model{values: flags("-n --lines -c --bytes -s --sleep-interval --pid --max-unchanged-stats"), text: flags("-n --lines -c --bytes -s --sleep-interval --pid --max-unchanged-stats")}, "tail")
	register(&model{values: flags("-d --delimiter -f --fields -c --characters -b --bytes --output-delimiter"), text: flags("-d --delimiter -f --fields -c --characters -b --bytes --output-delimiter")}, "cut")
	register(&model{values: flags("-f --skip-fields -s --skip-chars -w --check-chars"), text: flags("-f --skip-fields -s --skip-chars -w --check-chars")}, "uniq")
	register(&model{
		values: flags("-I --ignore --hide -T --tabsize -w --width --color --format --sort --time --time-style --quoting-style --block-size --indicator-style"),
		text:   flags("-I --ignore --hide -T --tabsize -w --width --color --format --sort --time --time-style --quoting-style --block-size --indicator-style"),
	}, "ls")
	register(&model{
		values: flags("-d --max-depth -B --block-size -t --threshold --exclude -X --exclude-from --time --time-style --files0-from"),
		text:   flags("-d --max-depth -B --block-size -t --threshold --exclude --time --time-style"),
	}, "du")
	register(&model{values: flags("-c --format --printf"), text: flags("-c --format --printf")}, "stat")
	register(&model{values: flags("-m --magic-file -F --separator -e --exclude -P --parameter"), text: flags("-F --separator -e --exclude -P --parameter")}, "file")
	register(&model{values: flags("-L -I -P -o --charset --filelimit --timefmt --sort -H -T"), text: flags("-L -I -P --charset --filelimit --timefmt --sort -H -T")}, "tree")
	register(&model{
		values: flags("-U --unified -C --context -x --exclude -X --exclude-from -I --ignore-matching-lines -L --label --from-file --to-file -F --show-function-line --line-format --old-line-format --new-line-format --unchanged-line-format --old-group-format --new-group-format --changed-group-format --unchanged-group-format --horizon-lines --tabsize -W --width --color --palette"),
		text:   flags("-U --unified -C --context -x --exclude -I --ignore-matching-lines -L --label -F --show-function-line --line-format --old-line-format --new-line-format --unchanged-line-format --old-group-format --new-group-format --changed-group-format --unchanged-group-format --horizon-lines --tabsize -W --width --color --palette"),
	}, "diff")
	// Programs whose operands are all text (they do not open them).
	register(&model{textOps: -1}, "echo", "tr", "expr", "basename", "dirname", "true", "false", "seq", "sleep", "yes", "whoami", "id", "uname", "pwd", "nproc", "printenv")
	register(&model{textOps: -1, riskyFlags: riskyAll("assigns through a variable name, and bash evaluates array subscripts in it", "-v")}, "printf")
	register(&model{textOps: -1, riskyFlags: riskyAll("tests a variable name, and bash evaluates array subscripts in it", "-v")}, "test", "[")
	register(&model{
		values:     flags("-d --date -f --file -r --reference -s --set"),
		text:       flags("-d --date"),
		textOps:    -1,
		riskyFlags: riskyAll("sets the system clock", "-s --set"),
	}, "date")
	register(&model{
		values:     flags("-f --from-file --indent --arg --argjson --slurpfile --rawfile"),
		text:       flags("--indent --arg --argjson"),
		textOps:    1,
		textUnless: flags("-f --from-file"),
		check:      checkJq,
	}, "jq")
	register(&model{values: flags("-t --target-directory -S --suffix --backup"), text: flags("-S --suffix --backup"),
		aliases: aliasMap("-t --target-directory -S --suffix -f --force -r --recursive -R --recursive -s --symbolic-link -l --link -n --no-clobber -a --archive -i --interactive -u --update -v --verbose -T --no-target-directory -b --backup")}, "cp", "mv", "ln")
	register(&model{aliases: aliasMap("-r --recursive -R --recursive -f --force -d --dir -v --verbose")}, "rm")
	register(&model{values: flags("-m --mode -t --target-directory -S --suffix -o --owner -g --group --backup"), text: flags("-m --mode -S --suffix -o --owner -g --group --backup"), check: checkModeOption}, "install")
	register(&model{values: flags("-m --mode --context"), text: flags("-m --mode --context"), check: checkModeOption, aliases: aliasMap("-m --mode -p --parents -v --verbose")}, "mkdir")
	register(&model{values: flags("-d --date -r --reference -t"), text: flags("-d --date -t")}, "touch")
	register(&model{values: flags("--output-error"), text: flags("--output-error"), aliases: aliasMap("-a --append -i --ignore-interrupts -p --output-error")}, "tee")
	register(&model{
		values: flags("-f --file -C --directory -T --files-from -X --exclude-from -b --blocking-factor -H --format -N --newer --after-date -V --label -g --listed-incremental -K --starting-file -L --tape-length --exclude --transform --xform --owner --group --mode --mtime --strip-components --use-compress-program -I --to-command --checkpoint-action --rsh-command --info-script -F --new-volume-script --rmt-command --index-file --volno-file --suffix"),
		text:   flags("-b --blocking-factor -H --format -N --newer --after-date -V --label -K --starting-file -L --tape-length --exclude --owner --group --mode --mtime --strip-components --suffix"),
		riskyFlags: append(append(append(append(
			riskyAll("runs a command for every member or checkpoint (GTFOBins: tar --checkpoint-action=exec=sh)", "--to-command --checkpoint-action --info-script -F --new-volume-script"),
			riskyAll("runs a compression program", "-I --use-compress-program")...),
			riskyAll("runs a remote shell command", "--rsh-command --rmt-command --force-local")...),
			riskyAll("writes members with absolute or \"..\" names, anywhere", "-P --absolute-names")...),
			riskyAll("rewrites member names, so extraction writes where the command line does not say (.git/hooks)", "--transform --xform")...),
		aliases: aliasMap("-x --extract -c --create -t --list -f --file -C --directory -T --files-from -X --exclude-from -P --absolute-names -I --use-compress-program -F --info-script -z --gzip -j --bzip2 -J --xz -v --verbose -r --append -u --update -A --catenate"),
		invoke:  invokeTar,
	}, "tar")
	register(&model{
		values:     flags("-TT --unzip-command -b --temp-path -P --password -x --exclude -i --include -n --suffixes -t --from-date -tt --before-date"),
		text:       flags("-P --password -x --exclude -i --include -n --suffixes -t --from-date -tt --before-date"),
		riskyFlags: riskyAll("runs the command given to test the archive (GTFOBins: zip -TT)", "-TT --unzip-command"),
	}, "zip")
	register(&model{values: flags("-d -x -P"), text: flags("-x -P")}, "unzip")
	register(&model{
		values:     flags("-o --output -O -d --data --data-raw --data-binary --data-urlencode --json -H --header -X --request -A --user-agent -e --referer -u --user -w --write-out -x --proxy -m --max-time --connect-timeout --retry -r --range -b --cookie -c --cookie-jar -T --upload-file -F --form --resolve --connect-to -K --config --output-dir --cacert --cert --key -E --url"),
		text:       flags("-d --data --data-raw --data-binary --data-urlencode --json -H --header -X --request -A --user-agent -e --referer -u --user -w --write-out -x --proxy -m --max-time --connect-timeout --retry -r --range -b --cookie -F --form --resolve --connect-to --url"),
		riskyFlags: riskyAll("reads options, and so any option, from a file", "-K --config"),
		check:      checkCurlData,
	}, "curl")
	register(&model{
		values:     flags("-O --output-document -o --output-file -a --append-output -P --directory-prefix -i --input-file --post-file --body-file -U --user-agent --header --post-data --body-data --user --password -t --tries -T --timeout -w --wait -e --execute --use-askpass --config -Q --quota"),
		text:       flags("-U --user-agent --header --post-data --body-data --user --password -t --tries -T --timeout -w --wait -Q --quota"),
		riskyFlags: riskyAll("runs wgetrc commands or a program", "-e --execute --use-askpass --config"),
	}, "wget")
	register(&model{
		values:     flags("-e --rsh --rsync-path --exclude --include --exclude-from --include-from --files-from --filter -f --log-file --password-file --chmod --chown --timeout --bwlimit --backup-dir --suffix --temp-dir -T --compare-dest --copy-dest --link-dest --config"),
		text:       flags("--exclude --include --filter -f --chmod --chown --timeout --bwlimit --suffix"),
		riskyFlags: riskyAll("runs a remote shell or remote program", "-e --rsh --rsync-path --daemon --config"),
	}, "rsync")
	register(&model{riskyFlags: riskyAll("runs a program on connection (reverse shell)", "-e -c --exec --sh-exec --lua-exec")}, "nc", "ncat", "netcat")
	register(&model{textOps: -1, check: checkSocat}, "socat")
	register(&model{check: refusePlusCommand}, "less", "more", "most")
	register(&model{values: flags("-P --pager -H --html -C --config-file -M --manpath -E --encoding"), text: flags("-E --encoding"), riskyFlags: riskyAll("runs the pager or browser command given", "-P --pager -H --html")}, "man")
	register(&model{
		values:     flags("-c --cmd -S -u -U -s -w -W -i -T"),
		text:       flags("-T"),
		riskyFlags: riskyAll("runs editor commands, which can run shell commands (GTFOBins: vim -c ':!sh')", "-c --cmd -S -u -U -s -W"),
		check:      refusePlusCommand,
	}, "vi", "vim", "nvim", "view", "vimdiff", "rvim")
	register(&model{riskyFlags: riskyAll("evaluates Lisp, which can run commands", "--eval -l --load -f --funcall --script -batch --batch -x")}, "emacs")
}

// checkModeOption checks the mode given to mkdir -m or install -m like a
// chmod mode.
func checkModeOption(c *shellCheck, inv *invocation) *finding {
	for _, v := range inv.values("-m", "--mode") {
		if why := modeProblem(v.text); why != "" {
			return &finding{RuleShellMode, inv.pp.name + " -m " + v.text + ": " + why}
		}
	}
	return nil
}

// checkCurlData checks the files curl reads for data ("-d @file",
// "-F name=@file", "-T file").
func checkCurlData(c *shellCheck, inv *invocation) *finding {
	for _, v := range inv.values("-d", "--data", "--data-binary", "--data-urlencode", "--json", "-F", "--form", "-b", "--cookie") {
		if i := strings.IndexByte(v.text, '@'); i >= 0 {
			if why := c.pathProblem(sub(v, i+1)); why != "" {
				return &finding{RuleShellPath, "curl reads data from " + v.text[i+1:] + ": " + why}
			}
		}
		if i := strings.IndexByte(v.text, '<'); i >= 0 {
			if why := c.pathProblem(sub(v, i+1)); why != "" {
				return &finding{RuleShellPath, "curl reads data from " + v.text[i+1:] + ": " + why}
			}
		}
	}
	return nil
}

// checkSocat refuses socat addresses that run programs.
func checkSocat(c *shellCheck, inv *invocation) *finding {
	for _, i := range inv.operands {
		a := strings.ToUpper(inv.args[i].text)
		for _, kind := range []string{"EXEC", "SYSTEM"} {
			if strings.HasPrefix(a, kind+":") || strings.Contains(a, ","+kind+":") || strings.Contains(a, "!!"+kind+":") {
				return &finding{RuleShellCode, fmt.Sprintf("socat address %s runs a program", inv.args[i].text)}
			}
		}
	}
	return nil
}

// refusePlusCommand refuses "+cmd" operands, which pagers and editors run
// as commands (less +!sh, vim +':!sh').
func refusePlusCommand(c *shellCheck, inv *invocation) *finding {
	for _, i := range inv.operands {
		if strings.HasPrefix(inv.args[i].text, "+") {
			return &finding{RuleShellCode, fmt.Sprintf("%s %s runs a command at start", inv.pp.name, inv.args[i].text)}
		}
	}
	return nil
}

// invokeTar reads the old form "tar czf x.tgz dir" (a first argument of
// bundled letters without a dash) like "tar -czf x.tgz dir".
func invokeTar(c *shellCheck, pp *programPolicy, args []word) *finding {
	if len(args) > 0 && isLetters(args[0].text) {
		args = append([]word{literalWord("-" + args[0].text)}, args[1:]...)
	}
	return c.generic(pp, pp.model, args)
}

func isLetters(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
			return false
		}
	}
	return true
}

// checkJq refuses jq programs that read the environment (env, $ENV),
// which may hold secrets.
func checkJq(c *shellCheck, inv *invocation) *finding {
	if inv.has("-f") || inv.has("--from-file") || len(inv.operands) == 0 {
		return nil
	}
	prog := inv.operand(0).text
	for i := 0; i < len(prog); i++ {
		if prog[i] == '"' { // skip string literals
			for i++; i < len(prog) && prog[i] != '"'; i++ {
				if prog[i] == '\\' {
					i++
				}
			}
			continue
		}
		if strings.HasPrefix(prog[i:], "$ENV") || strings.HasPrefix(prog[i:], "env") && (i == 0 || !isIdentByte(prog[i-1])) && (i+3 == len(prog) || !isIdentByte(prog[i+3])) {
			return &finding{RuleShellCode, "the jq program reads the environment, which may hold secrets"}
		}
	}
	return nil
}
