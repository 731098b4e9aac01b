//go:build unix && !linux

package mcpclient

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
