//go:build unix

package mcpclient

import (
	"os/exec"
	"syscall"
)

// setupProcess starts the command in its own process group, so that
// stopping it also stops what it started (npx, uvx and shells start the
// real server as a child), and (on Linux) has it killed if agentbus dies.
func setupProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

// killGroup kills what is left of the command's process group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil && cmd.Process.Pid > 0 {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
