//go:build unix

package selfheal

import (
	"io/fs"
	"os"
	"os/exec"
	"syscall"
)

// sameOwner gives path the owner of like, best effort: only root can, and
// a file left root's is still readable by the job.
func sameOwner(path string, like fs.FileInfo) {
	if like == nil {
		return
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		_ = os.Lchown(path, int(st.Uid), int(st.Gid))
	}
}

// canSwitchUser says whether Options.RunAs can be honoured here.
const canSwitchUser = true

// setProcessAttrs puts the step in its own process group and, when runAs is
// set, switches it to that user with no supplementary groups.
func setProcessAttrs(cmd *exec.Cmd, runAs *User) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if runAs != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: runAs.UID, Gid: runAs.GID, Groups: []uint32{}}
	}
	cmd.Cancel = func() error {
		// Negative pid: the whole group, including compilers started by make.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
