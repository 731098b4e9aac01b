package firewall

import "strings"

// git: "git [global options] command [options and arguments]". The command
// must be one git has: an alias ("git st") or a git-* program on PATH
// runs whatever it is configured to. Global options that load
// configuration or run git elsewhere (-c, --config-env, -C, --git-dir,
// --work-tree, --exec-path, --bare, -p) are refused unless listed in the
// program's flags: configuration decides pagers, hooks, fsmonitor, ssh
// and diff commands. Commands that run configured or given commands
// (config, submodule, bisect, rebase, difftool, mergetool, filter-branch,
// daemon, credential helpers, send-email, ...) must be listed in the
// program's subcommands, and so must command options that run programs
// (grep -O, fetch --upload-pack, diff --ext-diff, clone --template, ...).

var gitCommands = strings.Fields(`add am annotate apply archive bisect blame branch bundle cat-file check-attr
check-ignore check-mailmap check-ref-format checkout checkout-index cherry cherry-pick citool clean clone column
commit commit-graph commit-tree config count-objects credential credential-cache credential-store daemon describe
diagnose diff diff-files diff-index diff-tree difftool fast-export fast-import fetch fetch-pack filter-branch
fmt-merge-msg for-each-ref for-each-repo format-patch fsck gc get-tar-commit-id grep gui hash-object help hook
imap-send index-pack init instaweb interpret-trailers log ls-files ls-remote ls-tree mailinfo mailsplit maintenance
merge merge-base merge-file merge-index merge-tree mergetool mktag mktree multi-pack-index mv name-rev notes
pack-objects pack-redundant pack-refs patch-id prune prune-packed pull push range-diff read-tree rebase receive-pack
reflog remote repack replace request-pull rerere reset restore rev-list rev-parse revert rm send-email send-pack
shortlog show show-branch show-index show-ref sparse-checkout stage stash status stripspace submodule switch
symbolic-ref tag unpack-file unpack-objects update-index update-ref update-server-info upload-archive upload-pack
var verify-commit verify-pack verify-tag version whatchanged worktree write-tree`)

func init() {
	runs := "runs commands that are configured or given"
	riskySubs := map[string]string{}
	for _, s := range strings.Fields("config submodule bisect rebase difftool mergetool filter-branch daemon instaweb credential credential-cache credential-store send-email imap-send hook upload-pack receive-pack upload-archive for-each-repo maintenance gui citool help") {
		riskySubs[s] = runs
	}
	riskySubs["config"] = "changes configuration, which decides pagers, hooks, aliases and fsmonitor commands"
	// options that run programs, refused in every git command
	base := append(append(append(
		riskyAll("runs the external diff program from configuration", "--ext-diff"),
		riskyAll("runs text conversion programs from configuration", "--textconv")...),
		riskyAll("runs the given program on the other side, or locally for a local path", "--upload-pack --receive-pack --exec")...),
		riskyAll("runs the given command", "--extcmd --open-files-in-pager --config")...)
	withBase := func(m *model) *model {
		m.riskyFlags = append(append([]risky(nil), base...), m.riskyFlags...)
		if m.aliases == nil {
			m.aliases = aliasMap("-f --force")
		}
		return m
	}
	diffRisky := []risky(nil)
	logText := flags("--format --pretty --grep --author --committer --since --until --after --before --date -S -G --encoding --decorate-refs --decorate-refs-exclude -L")
	logValues := flags("--format --pretty --grep --author --committer --since --until --after --before --date -S -G --encoding --output -n --max-count --skip --decorate-refs --decorate-refs-exclude -L -U --unified")
	logModel := withBase(&model{values: logValues, text: append(logText, "-n", "--max-count", "--skip", "-U", "--unified"), riskyFlags: diffRisky})
	uploadPack := riskyAll("runs the given program on the remote side, or locally for a local path", "--upload-pack")
	git := &model{
		subcommand: true,
		mustSub:    true,
		values:     flags("-C -c --exec-path --git-dir --work-tree --namespace --super-prefix --config-env --list-cmds --attr-source"),
		riskyFlags: append(append(append(
			riskyAll("sets configuration, which decides pagers, hooks, aliases and other commands git runs", "-c --config-env"),
			riskyAll("runs git in another repository, with its configuration and hooks", "-C --git-dir --work-tree --bare")...),
			riskyAll("runs git helpers from another directory", "--exec-path")...),
			riskyAll("runs the configured pager command", "-p --paginate")...),
		knownSubs:  gitCommands,
		riskySubs:  riskySubs,
		aliases:    aliasMap("-p --paginate -P --no-pager"),
		subDefault: withBase(&model{}),
		subModels: map[string]*model{
			"log":          logModel,
			"show":         logModel,
			"whatchanged":  logModel,
			"shortlog":     logModel,
			"diff":         {values: flags("--output -U --unified --diff-filter"), text: flags("-U --unified --diff-filter"), riskyFlags: diffRisky},
			"format-patch": {values: flags("-o --output-directory --subject-prefix"), text: flags("--subject-prefix"), riskyFlags: diffRisky},
			"range-diff":   {riskyFlags: diffRisky},
			"grep": {
				values:     flags("-e -f -A -B -C --max-depth -m --max-count --threads -O --open-files-in-pager"),
				text:       flags("-e -A -B -C --max-depth -m --max-count --threads"),
				riskyFlags: riskyAll("opens the matches in the given command (a pager)", "-O --open-files-in-pager"),
				textOps:    1,
				textUnless: flags("-e -f"),
			},
			"commit":    {values: flags("-m --message -F --file -C --reuse-message -c --reedit-message --author --date -t --template --fixup --squash --trailer"), text: flags("-m --message -C --reuse-message -c --reedit-message --author --date --fixup --squash --trailer")},
			"tag":       {values: flags("-m --message -F --file -u --local-user --sort --format"), text: flags("-m --message -u --local-user --sort --format")},
			"stash":     {values: flags("-m --message"), text: flags("-m --message")},
			"branch":    {values: flags("--sort --format --contains --no-contains --merged --no-merged --points-at -u --set-upstream-to"), text: flags("--sort --format --contains --no-contains --merged --no-merged --points-at -u --set-upstream-to")},
			"blame":     {values: flags("-L -S --contents --date"), text: flags("-L --date")},
			"fetch":     {values: flags("--upload-pack --depth --deepen --shallow-since --shallow-exclude -j --jobs --refmap"), text: flags("--depth --deepen --shallow-since --shallow-exclude -j --jobs --refmap"), riskyFlags: uploadPack},
			"pull":      {values: flags("--upload-pack --depth -s --strategy -X --strategy-option"), text: flags("--depth -s --strategy -X --strategy-option"), riskyFlags: uploadPack},
			"ls-remote": {values: flags("--upload-pack -u --sort"), text: flags("--sort"), riskyFlags: append(uploadPack, riskyAll("runs the given upload-pack program", "-u")...)},
			"clone": {
				values: flags("--upload-pack -u --template -c --config -b --branch -o --origin --depth --reference --separate-git-dir --jobs -j --filter"),
				text:   flags("-b --branch -o --origin --depth --jobs -j --filter"),
				riskyFlags: append(append(uploadPack, riskyAll("runs the given upload-pack program", "-u")...),
					riskyAll("installs hooks from a template or sets configuration in the new repository", "--template -c --config")...),
			},
			"push":    {values: flags("--receive-pack --exec --repo -o --push-option"), text: flags("--repo -o --push-option"), riskyFlags: riskyAll("runs the given receive-pack program", "--receive-pack --exec")},
			"archive": {values: flags("--exec --remote -o --output --format --prefix"), text: flags("--remote --format --prefix"), riskyFlags: riskyAll("runs the given upload-archive program", "--exec")},
			"init":    {values: flags("--template --separate-git-dir -b --initial-branch --object-format"), text: flags("-b --initial-branch --object-format"), riskyFlags: riskyAll("installs hooks from a template", "--template")},
		},
	}
	for _, sm := range git.subModels {
		withBase(sm)
	}
	git.subModels["commit"].aliases = aliasMap("-n --no-verify -a --all -m --message -F --file -t --template -C --reuse-message -c --reedit-message -q --quiet -v --verbose -s --signoff")
	register(git, "git")
}
