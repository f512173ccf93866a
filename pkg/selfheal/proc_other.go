//go:build !unix

package selfheal

import "os/exec"

// canSwitchUser says whether Options.RunAs can be honoured here.
const canSwitchUser = false

// Without process groups only the direct child is killed on cancel, and
// there is no user switch (Run refuses Options.RunAs).
func setProcessAttrs(*exec.Cmd, *User) {}
