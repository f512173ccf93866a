// Package e2e holds end-to-end tests that build the real quarry-controller,
// quarry-agent and quarryctl binaries and run them as separate processes
// over real sockets.
package e2e
