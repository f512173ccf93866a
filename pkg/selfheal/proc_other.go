//go:build !unix

package selfheal

import "os/exec"

// Without process groups only the direct child is killed on cancel.
func setProcessGroup(*exec.Cmd) {}
