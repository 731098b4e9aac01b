//go:build !unix

package mcpclient

import "os/exec"

func setupProcess(*exec.Cmd) {}

func killGroup(*exec.Cmd) {}
