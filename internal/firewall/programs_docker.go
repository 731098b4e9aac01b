package firewall

import (
	"fmt"
	"path"
	"strings"
)

// docker, podman, nerdctl: "docker [global options] command ...". Global
// options that talk to another daemon (-H, --context) are refused unless
// listed. For run and create, options that give the container the host
// (--privileged, --cap-add, --device, --security-opt, host namespaces,
// --volumes-from, --runtime) are refused unless listed, and bind mounts
// (-v SRC:DST, --mount type=bind,source=SRC) must have their source under
// the roots (relative sources without ".." stay under the working
// directory); named volumes are allowed. The image and the command run
// inside the container are not checked: they run in the container.

var dockerRunValues = flags(`-a --attach --add-host --annotation --blkio-weight --blkio-weight-device --cap-add --cap-drop
--cgroup-parent --cgroupns --cidfile --cpu-period --cpu-quota --cpu-rt-period --cpu-rt-runtime -c --cpu-shares --cpus
--cpuset-cpus --cpuset-mems --device --device-cgroup-rule --device-read-bps --device-read-iops --device-write-bps
--device-write-iops --dns --dns-option --dns-search --domainname --entrypoint -e --env --env-file --expose --gpus
--group-add --health-cmd --health-interval --health-retries --health-start-interval --health-start-period
--health-timeout -h --hostname --ip --ip6 --ipc --isolation --kernel-memory -l --label --label-file --link
--link-local-ip --log-driver --log-opt --mac-address -m --memory --memory-reservation --memory-swap
--memory-swappiness --mount --name --network --net --network-alias --oom-score-adj --pid --pids-limit --platform -p
--publish --pull --restart --runtime --security-opt --shm-size --stop-signal --stop-timeout --storage-opt --sysctl
--tmpfs --ulimit -u --user --userns --uts -v --volume --volume-driver --volumes-from -w --workdir --detach-keys`)

var dockerRun = &model{
	values: dockerRunValues,
	text: flags(`-a --attach --add-host --annotation --blkio-weight --cap-drop --cgroup-parent --cpu-period --cpu-quota
--cpu-rt-period --cpu-rt-runtime -c --cpu-shares --cpus --cpuset-cpus --cpuset-mems --dns --dns-option --dns-search
--domainname --entrypoint -e --env --expose --group-add --health-cmd --health-interval --health-retries
--health-start-interval --health-start-period --health-timeout -h --hostname --ip --ip6 --isolation --kernel-memory
-l --label --link --link-local-ip --log-driver --log-opt --mac-address -m --memory --memory-reservation --memory-swap
--memory-swappiness --name --network-alias --oom-score-adj --pids-limit --platform -p --publish --pull --restart
--shm-size --stop-signal --stop-timeout --storage-opt --tmpfs --ulimit -u --user -w --workdir --detach-keys --mount
-v --volume --volume-driver --network --net --pid --ipc --uts --userns --cgroupns`),
	riskyFlags: append(append(
		riskyAll("gives the container the host's privileges or devices", "--privileged --cap-add --device --device-cgroup-rule --security-opt --runtime --gpus --sysctl"),
		riskyAll("shares another container's volumes", "--volumes-from")...),
		riskyAll("sets a namespace, which may be the host's", "--userns --cgroupns --uts")...),
	posix:    true, // options end at the image; the rest runs in the container
	noAbbrev: true,
	textOps:  -1,
}

func init() {
	cmds := strings.Fields(`attach build builder buildx commit compose config container context cp create diff events exec
export history image images import info inspect kill load login logout logs manifest network node pause plugin port ps
pull push rename restart rm rmi run save search secret service stack start stats stop swarm system tag top trust
unpause update version volume wait`)
	m := &model{
		subcommand: true,
		mustSub:    true,
		noAbbrev:   true,
		values:     flags("-H --host --context -c --config -l --log-level --tlscacert --tlscert --tlskey"),
		riskyFlags: riskyAll("talks to another docker daemon", "-H --host --context -c"),
		knownSubs:  cmds,
		riskySubs: map[string]string{
			"plugin":  "installs plugins, which run code on the host",
			"context": "switches to another docker daemon",
		},
		subDefault: &model{noAbbrev: true},
		subModels:  map[string]*model{"run": dockerRun, "create": dockerRun},
	}
	register(m, "docker", "podman", "nerdctl")
	dockerRun.check = checkDockerRun
}

func checkDockerRun(c *shellCheck, inv *invocation) *finding {
	for _, o := range inv.opts {
		if !o.hasValue {
			continue
		}
		v := inv.valueWord(o)
		v.text = strings.TrimPrefix(v.text, "=") // pflag reads -v=x as x
		switch {
		case o.matches("-v", inv.m) || o.matches("--volume", inv.m):
			if f := c.bindSource(strings.SplitN(v.text, ":", 2)[0], v.text); f != nil {
				return f
			}
		case o.matches("--mount", inv.m):
			kv := map[string]string{}
			for _, field := range strings.Split(v.text, ",") {
				k, val, _ := strings.Cut(field, "=")
				kv[strings.ToLower(k)] = val
			}
			src := kv["source"]
			if src == "" {
				src = kv["src"]
			}
			if kv["type"] == "bind" || strings.HasPrefix(src, "/") || strings.HasPrefix(src, ".") {
				if f := c.bindSource(src, v.text); f != nil {
					return f
				}
			}
		case o.matches("--pid", inv.m) || o.matches("--ipc", inv.m) || o.matches("--network", inv.m) || o.matches("--net", inv.m):
			if v.text == "host" || strings.HasPrefix(v.text, "container:") {
				return &finding{RuleShellFlag, fmt.Sprintf("%s %s=%s shares a namespace with the host or another container", inv.pp.name, o.name, v.text)}
			}
		}
	}
	return nil
}

// bindSource checks the source of a bind mount.
func (c *shellCheck) bindSource(src, spec string) *finding {
	if src == "" {
		return nil
	}
	named := true
	for i := 0; i < len(src); i++ {
		ch := src[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || (i > 0 && strings.IndexByte("_.-", ch) >= 0)) {
			named = false
			break
		}
	}
	if named && src != "." && src != ".." {
		return nil // a named volume
	}
	if why := c.pathProblem(literalWord(src)); why != "" {
		return &finding{RuleShellMount, "bind mount " + spec + ": " + why}
	}
	// The container may write anything under the source: not the working
	// directory or a root itself, where it could plant .git hooks or
	// other files the host runs.
	clean := path.Clean(src)
	if clean == "." || strings.HasPrefix(clean, "..") {
		return &finding{RuleShellMount, "bind mount " + spec + " gives the container the whole working directory; mount a subdirectory"}
	}
	for _, r := range c.p.roots {
		if clean == r {
			return &finding{RuleShellMount, "bind mount " + spec + " gives the container a whole root; mount a subdirectory"}
		}
	}
	return nil
}
