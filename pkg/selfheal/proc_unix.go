//go:build unix

package selfheal

import (
	"os/exec"
	"syscall"
)

func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the whole group, including compilers started by make.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
