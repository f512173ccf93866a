//go:build !unix

package selfheal

import (
	"io/fs"
	"os/exec"
)

// sameOwner does nothing where files have no unix owner.
func sameOwner(string, fs.FileInfo) {}

// canSwitchUser says whether Options.RunAs can be honoured here.
const canSwitchUser = false

// Without process groups only the direct child is killed on cancel, and
// there is no user switch (Run refuses Options.RunAs).
func setProcessAttrs(*exec.Cmd, *User) {}
